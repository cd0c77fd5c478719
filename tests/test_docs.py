"""Every Python example of the documentation runs: each ```python block of README.md and of
the pages under docs/ stands, line for line (each of its blank-line-separated parts in
order), in a program under ``examples/``, and each of those programs runs here with its
expected output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: Each runnable example and the last line it must print.
EXPECTED = {
    "quickstart.py": "42 200 Success",
    "streaming.py": "completion='once upon a time hi'",
    "testing_harness.py": "ok",
    "btauth_grpc.py": "14",
    "registry.py": "[6]",
    "legacy_bridge.py": "200 6",
    "tls_clients.py": "[6]",
    "validator_loop.py": "one step done",
}


#: The Markdown the blocks come from: the README and every page of the docs site.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks() -> list[tuple[str, str]]:
    """``(page, block)`` for every ```python block of the pages."""
    return [
        (str(page.relative_to(ROOT)), block)
        for page in PAGES
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    ]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def _parts(block: str) -> list[list[str]]:
    return [_lines(part) for part in re.split(r"\n\s*\n", block) if part.strip()]


def _stands_in(program: list[str], parts: list[list[str]]) -> bool:
    """Each part contiguous in ``program``, the parts in order."""
    start = 0
    for part in parts:
        found = next(
            (i for i in range(start, len(program) - len(part) + 1) if program[i : i + len(part)] == part), None
        )
        if found is None:
            return False
        start = found + len(part)
    return True


def test_every_python_block_of_the_docs_stands_in_an_example_program() -> None:
    programs = {name: _lines((EXAMPLES / name).read_text()) for name in EXPECTED}
    blocks = python_blocks()
    assert len(blocks) >= len(EXPECTED)
    shown = set()
    for page, block in blocks:
        parts = _parts(block)
        homes = [name for name, program in programs.items() if _stands_in(program, parts)]
        assert homes, f"this block of {page} is in no example program under examples/:\n{block}"
        shown.update(homes)
    assert shown == set(EXPECTED), f"example programs no page shows: {set(EXPECTED) - shown}"


def test_the_readme_stays_short_and_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    assert lines[3].startswith("make demo ") and lines[4].startswith("make test ")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_program_runs(name: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BT_AXON_IP": "127.0.0.1",
        "BT_AXON_PORT": "0",  # the system picks; the examples call axon.info() / axon.http_port
        "EXAMPLE_HTTP_PORT": "0",
        "AXON_GRPC_HOME": str(tmp_path),
        "AXON_GRPC_REGISTRY": str(tmp_path / "registry.sqlite"),
        "BT_WALLET_PATH": str(tmp_path / "bt"),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True, timeout=90, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].endswith(EXPECTED[name]), done.stdout[-2000:]
