"""Suite-wide fixtures: a real redis-server for the shared nonce store tests, and an axon with a
channel to it for the session tests.

Without ``redis-server`` the Redis tests are skipped with the reason, except under CI
(``CI`` set), where ``make test`` installs it and a skip would hide a missing step:
there they fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import grpc
import pytest

from axon_grpc.testing import serve_axon

from .redis_support import MISSING_REASON, RedisServer, in_ci
from .support import dummy_forward


def _require_redis() -> None:
    if MISSING_REASON is None:
        return
    if in_ci():
        pytest.fail(MISSING_REASON)
    pytest.skip(MISSING_REASON)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session (tests use distinct key namespaces)."""
    _require_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start a private redis-server (one a test may stop and restart; more redis-server options
    and a port may be given); stopped at the end."""
    _require_redis()
    started: list[RedisServer] = []

    def make(*extra_args: str, port: int | None = None) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(started)}", extra_args=extra_args, port=port).start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
async def session_axon() -> AsyncIterator[Any]:
    """An axon serving Dummy (sessions on, the default) and a channel to it."""
    async with serve_axon(dummy_forward) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        try:
            yield h, channel
        finally:
            await channel.close()
