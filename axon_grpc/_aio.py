"""asyncio helpers shared by the request path."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable

__all__ = ["within"]

if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[Any], seconds: float | None) -> Any:
        """Await with a time limit (``asyncio.timeout``: no extra task per call)."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def within(awaitable: Awaitable[Any], seconds: float | None) -> Any:
        """Await with a time limit."""
        return await asyncio.wait_for(awaitable, seconds)
