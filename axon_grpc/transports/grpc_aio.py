"""The in-process gRPC transport: a ``grpc.aio`` server translating calls for the pipeline.

Each attached synapse is the method ``/axon.v1.Axon/{Name}`` (unary, or server-streaming
for streaming synapses) taking and returning raw message bytes, so the body hash is over
the bytes exactly as sent. A method's handler is built once per endpoint; per call it
makes a :class:`~axon_grpc.server.call.Call` from the metadata, awaits ``Pipeline.handle`` and
answers with :mod:`~axon_grpc.transports.grpc_codec`: nothing else.

The request message is read only when the pipeline asks for it (after the checks that
need no body, within its body time limit), as the Envoy edge's adapter does: the
handlers are registered as client-streaming (the wire is the same as unary's), so a
call refused on its metadata is answered without its message ever being buffered, and
a message that stops arriving holds what it sent only until that limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import grpc

from axon_grpc.auth.sessions import Sessions
from axon_grpc.errors import SynapseParsingError
from axon_grpc.server.call import Call, Outcome, parse_peer
from axon_grpc.server.drain import ANSWER_S, Drain, shutting_down
from axon_grpc.server.endpoints import Endpoint
from axon_grpc.server.stream_writer import write_stream
from axon_grpc.transports.aio_discovery import Discovery
from axon_grpc.transports.grpc_codec import (
    GRPC_CODEC,
    METHOD_PREFIX,
    GrpcCodec,
    reply_message,
    status_code,
    stream_messages,
    synapse_name,
)
from axon_grpc.transports.session_open import SessionService

#: Default bounds: request message size and total metadata size.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_METADATA_BYTES = 16 * 1024

Handle = Callable[[Call], Awaitable[Outcome]]


async def read_message(context: grpc.aio.ServicerContext) -> bytes:
    """The call's request message (the first; a unary call has no other)."""
    message = await context.read()
    if message is grpc.aio.EOF:
        raise SynapseParsingError("Improperly formatted request. The call carried no message")
    return message  # type: ignore[no-any-return]


def grpc_call(
    name: str, context: grpc.aio.ServicerContext, peer_header: str | None = None, codec: GrpcCodec = GRPC_CODEC
) -> Call:
    """The :class:`Call` of one grpc.aio request (grpc.aio cancels it at its deadline);
    its message is read when the pipeline asks for it.

    ``peer_header``: the metadata key holding the caller's address, set by the Envoy edge
    in front (only ever given for a server that only that Envoy reaches)."""
    remaining = context.time_remaining()
    metadata = dict(context.invocation_metadata() or ())
    if peer_header is not None:
        ip, port = parse_peer(str(metadata.pop(peer_header, "")))
    else:
        ip, port = parse_peer(context.peer())
    return Call(
        name=name,
        headers=metadata,
        codec=codec,
        read_body=lambda: read_message(context),
        peer_ip=ip,
        peer_port=port,
        deadline=None if remaining is None else time.monotonic() + remaining,
        deadline_enforced=True,
        path=METHOD_PREFIX + name,
    )


async def _abort(context: grpc.aio.ServicerContext, outcome: Outcome, codec: GrpcCodec) -> None:
    context.set_trailing_metadata(codec.trailing_metadata(outcome))
    await context.abort(status_code(outcome), outcome.message)


#: The refusal of a call past :class:`ConnectionCalls`' bound (no pipeline work is done).
TOO_MANY_CALLS = "Too many calls in flight on this connection (rule R23)"


class ConnectionCalls:
    """How many calls each connection has in the axon's hands, bounded.

    HTTP/2 bounds the streams a connection has open (``max_concurrent_streams``) and a
    call is answered before its stream ends, so a client within that bound never has more
    calls here. A client that resets its streams while their calls still run could: those
    calls past the bound are refused at once (RESOURCE_EXHAUSTED), before any work.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live: dict[str, int] = {}

    def enter(self, peer: str) -> bool:
        count = self.live.get(peer, 0)
        if count >= self.limit:
            return False
        self.live[peer] = count + 1
        return True

    def leave(self, peer: str) -> None:
        count = self.live.pop(peer, 1) - 1
        if count > 0:
            self.live[peer] = count


async def _answered(
    context: grpc.aio.ServicerContext,
    calls: ConnectionCalls | None,
    drain: Drain,
    codec: GrpcCodec,
    run: Callable[[], Awaitable[Outcome]],
) -> Outcome:
    """One call's outcome, ``run()`` within the drain while the connection has room for it
    (RESOURCE_EXHAUSTED past :class:`ConnectionCalls`' bound, before any work); a refusal is
    aborted with its status, a success gets its trailers."""
    peer = context.peer()
    if calls is not None and not calls.enter(peer):
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, TOO_MANY_CALLS)
    try:
        outcome = await drain.run(run(), shutting_down)
    finally:
        if calls is not None:
            calls.leave(peer)
    if not outcome.ok:
        await _abort(context, outcome, codec)
    context.set_trailing_metadata(codec.trailing_metadata(outcome))
    return outcome


def unary_handler(
    name: str,
    handle: Handle,
    drain: Drain,
    calls: ConnectionCalls | None = None,
    peer_header: str | None = None,
    codec: GrpcCodec = GRPC_CODEC,
) -> grpc.RpcMethodHandler:
    async def unary(requests: Any, context: grpc.aio.ServicerContext) -> bytes:
        outcome = await _answered(
            context, calls, drain, codec, lambda: handle(grpc_call(name, context, peer_header, codec))
        )
        return reply_message(outcome)

    return grpc.stream_unary_rpc_method_handler(unary)


def stream_handler(
    name: str,
    handle: Handle,
    drain: Drain,
    calls: ConnectionCalls | None = None,
    peer_header: str | None = None,
    codec: GrpcCodec = GRPC_CODEC,
) -> grpc.RpcMethodHandler:
    async def serve(context: grpc.aio.ServicerContext) -> Outcome:
        """The stream's messages by the one stream writer (grpc.aio itself cancels the handler
        when the caller leaves or its gRPC deadline passes); the call's final outcome."""
        outcome = await handle(grpc_call(name, context, peer_header, codec))
        await write_stream(outcome, stream_messages(outcome), context.write)
        return outcome.final

    async def stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
        await _answered(context, calls, drain, codec, lambda: serve(context))

    return grpc.stream_stream_rpc_method_handler(stream)


class AxonService(grpc.GenericRpcHandler):
    """The ``axon.v1.Axon`` service: one handler per attached endpoint, built once.

    A name that is not attached gets a handler built for that call only (the pipeline
    answers it 404), so caller-chosen names are never cached.
    """

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint],
        handle: Handle,
        drain: Drain | None = None,
        calls: ConnectionCalls | None = None,
        peer_header: str | None = None,
        codec: GrpcCodec = GRPC_CODEC,
    ) -> None:
        self.endpoints = endpoints
        self.codec = codec
        self.handle = handle
        self.drain = drain if drain is not None else Drain()
        #: The bound on each connection's calls in flight (None: unbounded).
        self.calls = calls
        self.peer_header = peer_header
        self._handlers: dict[str, tuple[Endpoint, grpc.RpcMethodHandler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        name = synapse_name(handler_call_details.method)
        if name is None:
            return None
        endpoint = self.endpoints.get(name)
        cached = self._handlers.get(name)
        if cached is not None and cached[0] is endpoint:
            return cached[1]
        if endpoint is None:
            return unary_handler(name, self.handle, self.drain, self.calls, self.peer_header, self.codec)
        build = stream_handler if endpoint.streaming else unary_handler
        handler = build(name, self.handle, self.drain, self.calls, self.peer_header, self.codec)
        self._handlers[name] = (endpoint, handler)
        return handler


@dataclass
class GrpcSettings:
    """What the grpc.aio server is bound and limited by (the edge limits of library mode;
    ``axon-grpc serve`` puts Envoy's in front instead)."""

    ip: str
    port: int
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    #: Request metadata, a hard bound: larger is always refused (RESOURCE_EXHAUSTED).
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
    #: Two servers on one port must be asked for (several workers), never an accident.
    reuse_port: bool = False
    #: HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: calls at once on one connection.
    max_concurrent_streams: int = 100
    #: Connections at once; more are closed as they arrive.
    max_connections: int = 1024
    #: A connection with no call for this long is closed (GOAWAY).
    max_connection_idle_s: float = 300.0
    #: Every connection is closed after this long (GOAWAY), its calls given the age grace.
    max_connection_age_s: float = 3600.0
    max_connection_age_grace_s: float = 30.0
    #: Keepalive enforcement: a client pinging more often than this (with no call open,
    #: pings are refused outright) gets strikes, and GOAWAY after ``max_ping_strikes``.
    min_ping_interval_s: float = 60.0
    max_ping_strikes: int = 2
    #: Calls at once over all connections; more are refused RESOURCE_EXHAUSTED before their
    #: message is read. With ``max_request_bytes`` it bounds the bytes grpc buffers for
    #: messages still arriving (calls x message size). None: no bound.
    max_concurrent_rpcs: int | None = None
    #: Listen on this Unix socket instead of ``ip:port`` (behind the Envoy edge).
    unix_socket: str | None = None
    #: Metadata key of the caller's address, trusted: set only behind the Envoy edge.
    peer_header: str | None = None

    @property
    def address(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket else f"{self.ip}:{self.port}"

    def options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_receive_message_length", self.max_request_bytes),
            # grpc's max_metadata_size alone is a soft bound (some larger requests pass);
            # the absolute one refuses everything above it.
            ("grpc.max_metadata_size", self.max_metadata_bytes),
            ("grpc.absolute_max_metadata_size", self.max_metadata_bytes),
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            # Count the streams HTTP/2 counts, as the client does: grpc-core's default counts
            # streams until their call objects are freed, after the client saw them end, and
            # refuses (RST_STREAM REFUSED_STREAM) new calls of a client that keeps within the
            # advertised limit. What that guarded (calls outliving their streams) is bounded
            # per connection by ConnectionCalls instead.
            ("grpc.http.overload_protection", 0),
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.max_connection_idle_ms", int(self.max_connection_idle_s * 1000)),
            ("grpc.max_connection_age_ms", int(self.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(self.max_connection_age_grace_s * 1000)),
            ("grpc.http2.min_ping_interval_without_data_ms", int(self.min_ping_interval_s * 1000)),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.keepalive_permit_without_calls", 0),
            # Windows stay at HTTP/2's 64 KiB until a message is read (no BDP growth): a call
            # whose message is not (yet) asked for buffers at most that much.
            ("grpc.http2.bdp_probe", 0),
        ]


class GrpcServer:
    """Owns one ``grpc.aio`` server; runs on whichever loop starts it."""

    def __init__(
        self,
        settings: GrpcSettings,
        endpoints: Mapping[str, Endpoint],
        handle: Handle,
        extra_services: list[Callable[[Any], None]] | None = None,
        drain: Drain | None = None,
        *,
        codec: GrpcCodec = GRPC_CODEC,
        sessions: Sessions | None = None,
    ) -> None:
        self.settings = settings
        #: The answers' wire format (and the trailers every answer carries).
        self.codec = codec
        #: Served at ``/axon.v1.Session/Open`` when given (``axon-session/1``).
        self.sessions = sessions
        self.endpoints = endpoints
        self.handle = handle
        #: The requests in flight, for :meth:`stop`'s grace.
        self.drain = drain if drain is not None else Drain()
        self.extra_services = extra_services if extra_services is not None else []
        self.server: grpc.aio.Server | None = None
        self.bound_port: int | None = None
        self.discovery: Discovery | None = None

    def options(self) -> list[tuple[str, Any]]:
        return self.settings.options()

    async def start(self) -> int:
        settings = self.settings
        server = grpc.aio.server(options=self.options(), maximum_concurrent_rpcs=settings.max_concurrent_rpcs)
        calls = ConnectionCalls(settings.max_concurrent_streams)
        service = AxonService(self.endpoints, self.handle, self.drain, calls, settings.peer_header, self.codec)
        server.add_generic_rpc_handlers((service,))
        if self.sessions is not None:
            opens = SessionService(self.sessions, self.codec.trailers, read_message, settings.peer_header)
            server.add_generic_rpc_handlers((opens,))
        discovery = Discovery(self.endpoints)
        discovery.install(server)
        for extra in self.extra_services:
            extra(server)
        address = settings.address
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot bind gRPC server to {address}: {e}") from None
        if port == 0:
            raise OSError(f"cannot bind gRPC server to {address}")
        await server.start()
        await discovery.serving()
        self.server, self.bound_port, self.discovery = server, port, discovery
        return port

    async def not_serving(self) -> None:
        """Health says NOT_SERVING (the first step of a stop)."""
        if self.discovery is not None:
            await self.discovery.shutting_down()

    async def stop(self, grace: float | None) -> None:
        """NOT_SERVING, no new calls at once, calls in flight get ``grace`` seconds (then the
        drain answers them 503, see :meth:`~axon_grpc.server.drain.Drain.wait`)."""
        server, self.server = self.server, None
        await self.not_serving()
        if server is not None:
            await server.stop(None if grace is None else grace + ANSWER_S)
