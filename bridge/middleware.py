"""``AxonMiddleware``: the pure ASGI front of the bridge (no ``BaseHTTPMiddleware``).

It answers ``POST``/``GET /{Name}`` for every attached synapse itself, after the
header and body bounds, and hands everything else to the FastAPI app behind it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from axon_grpc.errors import Reason, RequestTooLarge
from axon_grpc.metrics.observer import HTTP, NO_SCHEME, UNKNOWN_SYNAPSE
from axon_grpc.server.call import parse_peer
from axon_grpc.server.drain import Drain, shutting_down
from axon_grpc.server.stream_writer import DONE, write_stream

from .limits import guarded_receive, header_map, read_body
from .responses import Reply, StreamReply
from .seed_stages import SeedStages

if TYPE_CHECKING:  # pragma: no cover
    from .app import HttpBridge

SYNAPSE_METHODS = frozenset({"POST", "GET"})


async def send_reply(send: Send, reply: Reply) -> None:
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
    await send({"type": "http.response.body", "body": reply.body})


async def send_stream(send: Send, receive: Receive, reply: StreamReply) -> None:
    """Write a streamed answer chunk by chunk with the one stream writer; a response it
    cuts short (the caller left, or stopped reading until the deadline) closes the connection."""
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})

    async def write(piece: bytes) -> None:
        await send({"type": "http.response.body", "body": piece, "more_body": True})

    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        ending = await write_stream(reply.outcome, reply.chunks, write, watcher)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    if ending == DONE:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def trusted_peer(scope: Scope, header: str) -> Scope:
    """``scope`` with its client taken from ``header`` (set by the Envoy edge in front, the
    only one reaching this server), and that header removed."""
    name = header.encode("latin-1")
    kept, value = [], b""
    for key, header_value in scope["headers"]:
        if key == name:
            value = header_value
        else:
            kept.append((key, header_value))
    host, port = parse_peer(value.decode("latin-1"))
    return {**scope, "headers": kept, "client": (host, port or 0) if host else None}


class AxonMiddleware(SeedStages):
    """Serves the legacy protocol for attached synapses; other requests go to ``app``.

    A request for an attached synapse becomes a :class:`~axon_grpc.server.call.Call` for
    ``Pipeline.handle`` (through the bridge's exchange); the seed-named stage methods
    (:class:`~bridge.seed_stages.SeedStages`) expose the pipeline's steps on their own.

    ``AxonMiddleware(app, axon)`` is the seed's form (the axon's own bridge); the bridge
    builds its own with ``bridge=`` and no axon: it works from the bridge's collaborators.
    """

    def __init__(self, app: ASGIApp, axon: Any = None, bridge: HttpBridge | None = None) -> None:
        self.app = app
        #: The seed's attribute: the axon given, or None when the bridge built this.
        self.axon = axon
        bridge = bridge if bridge is not None else axon.http
        self.parts = bridge.parts
        self.exchange = bridge.exchange
        self.limits = bridge.limits
        self.bridge = bridge
        #: The requests in flight, shared with the gRPC server: the axon's stop drains both.
        self.drain: Drain = self.parts.drain

    def _shutting_down(self) -> Reply:
        return self.exchange.reply(shutting_down())  # type: ignore[return-value]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.bridge.peer_header is not None:
            scope = trusted_peer(scope, self.bridge.peer_header)
        raw = scope["headers"]
        headers, size = header_map(raw)
        limits = self.limits
        problem = limits.header_problem(len(raw), size)
        if problem is not None:
            self._refused(scope, 431)
            await send_reply(send, self.exchange.plain_error(431, problem))
            return
        problem = limits.body_problem(headers.get("content-length"))
        if problem is not None:
            self._refused(scope, RequestTooLarge.status_code)
            await send_reply(send, self.exchange.plain_error(RequestTooLarge.status_code, problem))
            return
        name = scope["path"][1:]
        if scope["method"] not in SYNAPSE_METHODS or name not in self.parts.endpoints:
            await self.app(scope, guarded_receive(receive, limits), send)
            return
        query = scope.get("query_string", b"")
        target = scope["path"] + ("?" + query.decode("latin-1") if query else "")  # what btauth signs
        drain = self.drain
        reply = await drain.run(
            self.exchange.handle(
                name, headers, scope.get("client"), lambda: read_body(receive, limits), scope["method"], target
            ),
            self._shutting_down,
        )
        if isinstance(reply, StreamReply):
            await drain.run(send_stream(send, receive, reply), lambda: None)  # cut short: the connection closes
        else:
            await send_reply(send, reply)

    def _refused(self, scope: Scope, status: int) -> None:
        """Count a size refusal answered here, before the pipeline (the metrics' ``size`` reason)."""
        name = scope["path"][1:]
        parts = self.parts
        parts.pipeline.observer.finished(
            name if name in parts.endpoints else UNKNOWN_SYNAPSE, HTTP, NO_SCHEME, status, Reason.SIZE, 0.0, None
        )
