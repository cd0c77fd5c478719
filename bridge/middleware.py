"""``AxonMiddleware``: the pure ASGI front of the bridge (no ``BaseHTTPMiddleware``).

It answers ``POST``/``GET /{Name}`` for every attached synapse itself, after the
header and body bounds, and hands everything else to the FastAPI app behind it.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from axon_grpc.auth.credentials import CRYPTO, Credentials
from axon_grpc.errors import AxonError, Reason, RequestTooLarge, UnknownSynapseError
from axon_grpc.info import split_address
from axon_grpc.metrics.observer import NO_SCHEME, UNKNOWN_SYNAPSE
from axon_grpc.server.call import HTTP, Call
from axon_grpc.server.drain import Drain, shutting_down
from axon_grpc.server.forwarding import timed_out
from axon_grpc.server.pipeline import MAX_QUOTED_NAME
from axon_grpc.synapse import Synapse

from .limits import guarded_receive, read_body
from .responses import Reply, StreamReply, error_reply, to_response

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.server.axon import Axon
    from axon_grpc.server.endpoints import Endpoint

    from .app import HttpBridge

SYNAPSE_METHODS = frozenset({"POST", "GET"})


def header_map(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], int]:
    """Lowercase-keyed str headers (last one wins) and their total size in bytes."""
    headers: dict[str, str] = {}
    size = 0
    for key, value in raw:
        size += len(key) + len(value)
        headers[key.decode("latin-1").lower()] = value.decode("latin-1")
    return headers, size


async def send_reply(send: Send, reply: Reply) -> None:
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
    await send({"type": "http.response.body", "body": reply.body})


async def send_stream(send: Send, receive: Receive, reply: StreamReply) -> None:
    """Write a streamed answer chunk by chunk; a client that leaves cancels the stream, and
    so does the call's deadline (a client that stopped reading blocks the writes): the
    response is then cut short and the connection closed."""
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})

    async def pump() -> None:
        async for piece in reply.chunks:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    outcome = reply.outcome
    writer = asyncio.ensure_future(pump())
    watcher = asyncio.ensure_future(disconnected())
    expired = False
    try:
        timeout = outcome.remaining() if outcome is not None else None
        done, _ = await asyncio.wait((writer, watcher), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        expired = not done
    finally:
        for task in (writer, watcher):
            task.cancel()
        await asyncio.gather(writer, watcher, return_exceptions=True)
        if expired and outcome is not None:
            await outcome.cut(timed_out(outcome.synapse))
        await reply.chunks.aclose()  # type: ignore[attr-defined]


@contextmanager
def _recorded(synapse: Synapse) -> Iterator[None]:
    """An axon refusal raised inside also sets ``synapse.axon``'s status, as the SDK's stages do."""
    try:
        yield
    except AxonError as e:
        if synapse.axon is not None:
            synapse.axon.__dict__.update(status_code=int(e.status_code), status_message=e.message)
        raise


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
    host, port = split_address(value.decode("latin-1"))
    return {**scope, "headers": kept, "client": (host, port or 0) if host else None}


class AxonMiddleware:
    """Serves the legacy protocol for attached synapses; other requests go to ``app``.

    A request for an attached synapse becomes a :class:`~axon_grpc.server.call.Call` for
    ``Pipeline.handle`` (through the bridge's exchange); the seed-named methods below
    expose the stages on their own for callers and tests.
    """

    def __init__(self, app: ASGIApp, axon: Axon, bridge: HttpBridge | None = None) -> None:
        self.app = app
        self.axon = axon
        bridge = bridge if bridge is not None else axon.http
        self.exchange = bridge.exchange
        self.limits = bridge.limits
        self.bridge = bridge
        #: The requests in flight, shared with the gRPC server: the axon's stop drains both.
        self.drain: Drain = getattr(axon, "drain", None) or Drain()

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
        if scope["method"] not in SYNAPSE_METHODS or name not in self.axon.endpoints:
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
        self.axon.pipeline.observer.finished(
            name if name in self.axon.endpoints else UNKNOWN_SYNAPSE, HTTP, NO_SCHEME, status, Reason.SIZE, 0.0, None
        )

    # -- the seed's stage names, each one stage of the pipeline ---------------------------------
    def _endpoint(self, name: str | None) -> Endpoint:
        endpoint = self.axon.endpoints.get(str(name))
        if endpoint is None:
            raise UnknownSynapseError(f"Synapse name '{str(name)[:MAX_QUOTED_NAME]}' not found")
        return endpoint

    async def preprocess(self, request: Request) -> Synapse:
        """The synapse of ``request``'s headers (user fields at their zero values), with the
        axon's terminal info filled and signed. Hooks in the pipeline never see this one:
        they get the synapse built from the signed body."""
        pipeline = self.axon.pipeline
        endpoint = self._endpoint(request.url.path.split("/")[1])
        headers, _ = header_map(request.headers.raw)
        client = request.client
        call = Call(
            endpoint.name,
            headers,
            HTTP,
            peer_ip=client.host if client else None,
            peer_port=client.port if client else None,
        )
        synapse = pipeline.stand_in(endpoint, Credentials.read(headers), call)
        synapse.__dict__["axon"] = pipeline.terminal.info(100, None)
        pipeline.terminal.sign(synapse)
        return synapse

    async def blacklist(self, synapse: Synapse) -> None:
        """Raise :class:`~axon_grpc.errors.BlacklistedException` (403) if ``blacklist_fn`` refuses;
        as the SDK's, the refusal is also written to ``synapse.axon``."""
        with _recorded(synapse):
            await self.axon.pipeline.blacklist(self._endpoint(synapse.name), synapse)

    async def verify(self, synapse: Synapse, headers: Mapping[str, str] | None = None) -> None:
        """Signature and nonce (legacy scheme), then the miner's checks; raises
        :class:`~axon_grpc.errors.NotVerifiedException` (401), written to ``synapse.axon`` too."""
        pipeline = self.axon.pipeline
        crypto = (headers or {}).get(CRYPTO, "sr25519")
        with _recorded(synapse):
            await pipeline.verifier.verify_legacy(synapse, crypto)
            await pipeline.verify_hooks(self._endpoint(synapse.name), synapse)

    async def priority(self, synapse: Synapse) -> float:
        """The priority ``priority_fn`` gives ``synapse`` (0.0 without one)."""
        return await self.axon.pipeline.priority(self._endpoint(synapse.name), synapse)

    async def run(self, synapse: Synapse, body: Mapping[str, Any], priority: float = 0.0) -> Synapse:
        """Body stage and forward for a verified header synapse; returns the answered synapse."""
        pipeline = self.axon.pipeline
        endpoint = self._endpoint(synapse.name)
        data = dict(synapse.__dict__)
        data.update((key, body[key]) for key in endpoint.user_fields if key in body)
        full = pipeline.validate(endpoint, data)
        pipeline.check_legacy_hash(endpoint, full, synapse.computed_body_hash)
        return await pipeline.forward(endpoint, full, priority)

    def synapse_to_response(self, synapse: Synapse) -> Response:
        """The legacy response for ``synapse``: 200 with its JSON, else ``{"message": ...}``."""
        info = synapse.axon
        if info is not None and info.status_code in (None, 100):
            info.__dict__.update(status_code=200, status_message="Success")
        endpoint = self.axon.endpoints.get(str(synapse.name))
        if endpoint is None or not isinstance(synapse, endpoint.synapse_class):
            return to_response(error_reply(synapse))
        route = self.exchange.route(endpoint)
        ok = info is None or info.status_code == 200
        return to_response(route.success(synapse, {}) if ok else route.error(synapse))
