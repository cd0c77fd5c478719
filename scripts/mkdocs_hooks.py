"""mkdocs hooks of the docs site: the changelog page is the top-level CHANGELOG.md, included
as it is; its links into docs/ are made relative to the page."""

from __future__ import annotations

from typing import Any


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri == "changelog.md":
        return markdown.replace("](docs/", "](")
    return markdown
