"""uvicorn's HTTP/1.1 protocols with time, size and count limits on what they accept.

uvicorn bounds the wait between requests on a kept-alive connection
(``timeout_keep_alive``) but not the wait for a head: a client that connects and sends
nothing, or sends its headers a byte at a time, keeps a connection (and a file
descriptor) as long as it likes. These protocols close a connection whose request head
is not complete ``head_timeout_s`` seconds after its first byte (or after the connection
opened, for the first request).

Nor does uvicorn's ``httptools`` protocol bound a head's size: it gathers a 200 MiB
header block or request target in memory before the application can answer 431. These
protocols answer 431 and close once ``head_max_bytes`` arrived without a complete head
(h11 has its own bound, ``h11_max_incomplete_event_size``, set to the same value).

And a connection past ``max_connections`` (uvicorn's ``limit_concurrency`` only answers
requests 503, after accepting their connections) is closed as it arrives, so idle
connections cannot take every file descriptor of the process (and starve gRPC's port).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from typing import Any

#: Default time limit (seconds) on reading one request head.
DEFAULT_HEAD_TIMEOUT_S = 10.0

#: Seconds a refused connection's further bytes are read and dropped before it is closed.
LINGER_S = 1.0


def head_too_large_reply(limit: int) -> bytes:
    """The 431 of a head past ``limit`` bytes, a legacy-style ``{"message": ...}`` body."""
    body = json.dumps({"message": f"Request head too large: limit is {limit} bytes"}).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )


class HeadTimeout:
    """Mixin for a uvicorn protocol class (it sets ``self.cycle`` once a head is complete)."""

    config: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    connections: set[Any]
    _head_timer: asyncio.TimerHandle | None = None
    _head_of: Any = None
    _head_bytes = 0
    _discarding = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        limit = getattr(self.config, "max_connections", None)
        if limit is not None and len(self.connections) > limit:
            transport.close()  # over the cap: its descriptor is freed at once
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return  # answered 431: what still comes is dropped until the connection closes
        waiting = self._waiting_for_head()
        if waiting:
            if self._head_timer is None:
                self._arm_head_timer()
            self._head_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]
        if not waiting or not self._waiting_for_head():
            self._head_bytes = 0  # a head was complete: the next one is counted afresh
        elif self._head_bytes > getattr(self.config, "head_max_bytes", self._head_bytes):
            self._refuse_head(self.config.head_max_bytes)

    def _refuse_head(self, limit: int) -> None:
        """Answer 431 and close: the answer first, then (a lingering close) drop what the
        client is still sending for up to a second, so that closing with unread bytes
        (a TCP reset) does not destroy the answer before the client reads it."""
        transport = self.transport
        self._head_bytes, self._discarding = 0, True
        if transport.is_closing():
            return
        transport.write(head_too_large_reply(limit))
        if transport.can_write_eof():
            transport.write_eof()
        self.loop.call_later(LINGER_S, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def _waiting_for_head(self) -> bool:
        cycle = self.cycle
        return cycle is None or bool(cycle.response_complete)

    def _arm_head_timer(self) -> None:
        self._head_of = self.cycle  # the request before the one whose head is awaited
        timeout = getattr(self.config, "head_timeout_s", DEFAULT_HEAD_TIMEOUT_S)
        self._head_timer = self.loop.call_later(timeout, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is self._head_of and self._waiting_for_head():  # no new head since armed
            self.transport.close()


def protocol_class(http: str) -> type:
    """uvicorn's ``httptools`` or ``h11`` protocol with :class:`HeadTimeout` mixed in."""
    if http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]
    return type(f"HeadTimeout{base.__name__}", (HeadTimeout, base), {})


def best_http() -> str:
    """``httptools`` when installed (faster), else ``h11``."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"
