"""The gRPC transport: a ``grpc.aio`` server whose interceptor admits each call.

Each attached synapse is the unary method ``/axon.v1.Axon/{Name}`` taking and
returning raw message bytes (the body hash is over the bytes exactly as sent).
:class:`AxonInterceptor` runs preprocess, blacklist, verify and priority on the
metadata before the body is parsed; :class:`AxonService` checks the body hash,
parses the body, runs the forward and answers with the axon's terminal info in
trailing metadata. Errors abort with the gRPC status of the one status table.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Sequence

import grpc

from .discovery import SERVICE_NAME, Discovery
from .errors import SynapseParsingError, grpc_status_for
from .pipeline import Endpoint, Pipeline
from .streaming import FINAL_TAG, chunk_schema, encode_chunk, frame
from .synapse import AXON_PREFIX, Synapse

if TYPE_CHECKING:  # pragma: no cover
    from .axon import Axon

logger = logging.getLogger("axon_grpc")

METHOD_PREFIX = f"/{SERVICE_NAME}/"

#: Default bounds: request message size and total metadata size.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_METADATA_BYTES = 16 * 1024


@dataclass
class Admitted:
    """What the interceptor learned about a call, handed to the service."""

    endpoint: Endpoint
    synapse: Synapse
    priority: float
    start_time: float
    headers: dict[str, str]


_admitted: contextvars.ContextVar[Admitted] = contextvars.ContextVar("axon_grpc_admitted")


def synapse_name(method: str) -> str | None:
    """``Dummy`` for ``/axon.v1.Axon/Dummy``; None for other services."""
    if method.startswith(METHOD_PREFIX):
        return method[len(METHOD_PREFIX):]
    return None


def metadata_map(metadata: Sequence[Any] | None) -> dict[str, str]:
    """Text metadata as a dict (gRPC keys are already lowercase; binary keys skipped)."""
    return {key: value for key, value in (metadata or ()) if isinstance(value, str)}


def terminal_metadata(synapse: Synapse) -> tuple[tuple[str, str], ...]:
    """The axon's terminal info as ``bt_header_axon_*`` metadata pairs."""
    info = synapse.axon
    if info is None:
        return ()
    return tuple((AXON_PREFIX + key, str(value)) for key, value in info.__dict__.items() if value is not None)


def parse_peer(peer: str | None) -> tuple[str | None, int | None]:
    """``("127.0.0.1", 5555)`` from gRPC peer strings like ``ipv4:127.0.0.1:5555``."""
    if not peer:
        return None, None
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return address or kind, None
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        return host, None


async def abort_with(context: grpc.aio.ServicerContext, synapse: Synapse) -> None:
    """End the call with the status recorded on ``synapse.axon``."""
    info = synapse.axon
    assert info is not None
    context.set_trailing_metadata(terminal_metadata(synapse))
    await context.abort(grpc_status_for(info.status_code or 500), info.status_message or "")


def _log_call(synapse: Synapse, start_time: float) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        d, a = synapse.dendrite, synapse.axon
        logger.debug(
            "grpc %s from %s -> %s in %.2f ms",
            synapse.name, d.hotkey if d else None, a.status_code if a else None, (time.time() - start_time) * 1e3,
        )


Behavior = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]
StreamBehavior = Callable[[bytes, grpc.aio.ServicerContext], AsyncIterator[bytes]]


class AxonInterceptor(grpc.aio.ServerInterceptor):
    """Preprocess, blacklist, verify and priority, on metadata, before the body is parsed.

    The wrapping handler of each method is built once (per attached endpoint) and reads
    the call's metadata from its context, so a call costs the interceptor a lookup.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._wrapped: dict[str, tuple[Endpoint, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        name = synapse_name(method)
        if name is None:
            return await continuation(handler_call_details)
        endpoint = self.pipeline.axon.endpoints.get(name)
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is endpoint:
            return cached[1]
        wrapped = self._wrap(name, method, await continuation(handler_call_details))
        if endpoint is not None:  # unknown names are not cached: callers choose them freely
            self._wrapped[method] = (endpoint, wrapped)
        return wrapped

    def _wrap(self, name: str, method: str, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
        pipeline = self.pipeline

        async def admit(request: bytes, context: grpc.aio.ServicerContext) -> Admitted:
            start = time.time()
            headers = metadata_map(context.invocation_metadata())
            peer_ip, peer_port = parse_peer(context.peer())
            try:
                endpoint, synapse, priority = await pipeline.admit(
                    name, headers, peer_ip, peer_port, body=request, path=method
                )
            except Exception as e:
                failed = pipeline.fail(pipeline.error_synapse(e), e, start)
                _log_call(failed, start)
                await abort_with(context, failed)
                raise  # unreachable: abort raises
            return Admitted(endpoint, synapse, priority, start, headers)

        if handler is not None and handler.unary_stream is not None:
            inner_stream: StreamBehavior = handler.unary_stream

            async def admit_then_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
                token = _admitted.set(await admit(request, context))
                try:
                    async for message in inner_stream(request, context):
                        yield message
                finally:
                    _admitted.reset(token)

            return grpc.unary_stream_rpc_method_handler(admit_then_stream)

        inner: Behavior | None = handler.unary_unary if handler is not None else None

        async def admit_then_handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            admitted = await admit(request, context)
            assert inner is not None  # unknown names were refused by admit
            token = _admitted.set(admitted)
            try:
                return await inner(request, context)
            finally:
                _admitted.reset(token)

        return grpc.unary_unary_rpc_method_handler(admit_then_handle)


class AxonService(grpc.GenericRpcHandler):
    """The ``axon.v1.Axon`` service: one method per attached synapse (streaming ones stream)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._unary = grpc.unary_unary_rpc_method_handler(self._handle)
        self._streaming = grpc.unary_stream_rpc_method_handler(self._stream)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        name = synapse_name(handler_call_details.method)
        endpoint = self.pipeline.axon.endpoints.get(name) if name is not None else None
        if endpoint is None:
            return None
        return self._streaming if endpoint.streaming else self._unary

    def _request(self, admitted: Admitted, request: bytes, context: grpc.aio.ServicerContext) -> tuple[Synapse, float | None]:
        """The full synapse from the body, and the call's effective timeout."""
        pipeline, endpoint, header_synapse = self.pipeline, admitted.endpoint, admitted.synapse
        pipeline.check_body_hash(header_synapse, hashlib.sha3_256(request).hexdigest(), admitted.headers)
        try:
            values = endpoint.schema.from_bytes(request)
        except ValueError as e:
            raise SynapseParsingError(f"Improperly formatted request. Could not parse body: {e}") from None
        synapse = pipeline.with_body(endpoint, header_synapse, values)
        remaining = context.time_remaining()
        timeout = header_synapse.timeout
        if remaining is not None and (timeout is None or remaining < timeout):
            timeout = remaining
        return synapse, timeout

    async def _handle(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        admitted = _admitted.get()
        endpoint, header_synapse, start = admitted.endpoint, admitted.synapse, admitted.start_time
        pipeline = self.pipeline
        try:
            synapse, timeout = self._request(admitted, request, context)
            result = await pipeline.forward(endpoint, synapse, admitted.priority, timeout)
            pipeline.succeed(result, header_synapse, start)
            body = endpoint.schema.to_bytes(result)
        except Exception as e:
            failed = pipeline.fail(header_synapse, e, start)
            _log_call(failed, start)
            await abort_with(context, failed)
            raise  # unreachable: abort raises
        context.set_trailing_metadata(terminal_metadata(result))
        _log_call(result, start)
        return body

    async def _stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Chunks as ``{Name}Stream.chunk`` messages, then ``final``; status in trailers."""
        admitted = _admitted.get()
        endpoint, header_synapse, start = admitted.endpoint, admitted.synapse, admitted.start_time
        pipeline = self.pipeline
        chunks: AsyncIterator[Any] | None = None
        try:
            synapse, timeout = self._request(admitted, request, context)
            codec = chunk_schema(endpoint.synapse_class)  # type: ignore[arg-type]
            chunks = pipeline.stream(endpoint, synapse, admitted.priority, timeout)
            async for chunk in chunks:
                yield encode_chunk(codec, chunk, endpoint.name)
            pipeline.succeed(synapse, header_synapse, start)
            final = frame(FINAL_TAG, endpoint.schema.to_bytes(synapse))
        except Exception as e:
            failed = pipeline.fail(header_synapse, e, start)
            _log_call(failed, start)
            await abort_with(context, failed)
            raise  # unreachable: abort raises
        finally:
            if chunks is not None:
                await chunks.aclose()  # type: ignore[attr-defined]
        context.set_trailing_metadata(terminal_metadata(synapse))
        _log_call(synapse, start)
        yield final


class GrpcServer:
    """Owns the ``grpc.aio`` server of one axon; runs on whichever loop starts it."""

    def __init__(self, axon: Axon, pipeline: Pipeline) -> None:
        self.axon = axon
        self.pipeline = pipeline
        self.server: grpc.aio.Server | None = None
        self.bound_port: int | None = None
        self.discovery: Discovery | None = None

    def options(self) -> list[tuple[str, Any]]:
        axon = self.axon
        return [
            ("grpc.max_receive_message_length", axon.max_request_bytes),
            ("grpc.max_metadata_size", axon.max_metadata_bytes),
            # Two servers on one port must be asked for (several workers), never an accident.
            ("grpc.so_reuseport", 1 if axon.reuse_port else 0),
        ]

    async def start(self) -> int:
        axon = self.axon
        server = grpc.aio.server(interceptors=[AxonInterceptor(self.pipeline)], options=self.options())
        server.add_generic_rpc_handlers((AxonService(self.pipeline),))
        discovery = Discovery(axon)
        discovery.install(server)
        for extra in axon.extra_services:
            extra(server)
        address = f"{axon.ip}:{axon.port}"
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

    async def stop(self, grace: float | None) -> None:
        server, self.server = self.server, None
        if self.discovery is not None:
            await self.discovery.shutting_down()
        if server is not None:
            await server.stop(grace)
