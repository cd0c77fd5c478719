"""A hostile axon for the Dendrite's session tests: a grpc.aio server on loopback that announces
``axon-session/1`` on every answer and answers opens and session calls as a test tells it to
(slowly, with refusals, or with accepts it altered and signed by its own hotkey)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

import grpc

from axon_grpc import Keypair
from axon_grpc.auth import session_wire as wire
from axon_grpc.info import AxonInfo

ANNOUNCE = ((wire.ANNOUNCE_TRAILER, wire.VERSION),)
#: The streaming method answered (tests.test_streaming.Story's).
STREAM_METHOD = "/axon.v1.Axon/Story"
#: Dummy(input=7)'s answer: input 7, output 14.
REPLY = b"\x08\x07\x10\x0e"


@dataclass
class Hostile:
    """What the hostile axon does; ``opens`` and ``calls`` count what it was sent."""

    keypair: Keypair = field(default_factory=Keypair.generate)
    #: An open: None answers with ``accept`` (after ``alter``); else ``(status code, details)``.
    open_refusal: tuple[grpc.StatusCode, str] | None = None
    open_delay: float = 0.0
    alter: Callable[[wire.SessionAccept], None] = lambda accept: None
    #: The accept's signature in place of the axon's, when given.
    signature: str | None = None
    #: A session call: None answers; else ``(status code, details)``.
    call_refusal: tuple[grpc.StatusCode, str] | None = None
    #: How long a stream (``STREAM_METHOD``) stays silent before it ends.
    stream_silence: float = 60.0
    opens: int = 0
    calls: list[dict[str, str]] = field(default_factory=list)
    info: AxonInfo | None = None

    def accept(self, data: bytes) -> bytes:
        request = wire.SessionOpen.decode(data)
        accept = wire.SessionAccept(
            version=request.version,
            dendrite_hotkey=request.dendrite_hotkey,
            axon_hotkey=request.axon_hotkey,
            dendrite_ephemeral_key=request.ephemeral_key,
            axon_ephemeral_key=wire.ephemeral_keypair()[1],
            nonce=request.nonce,
            session_id="0badc0de-" + "ab" * 16,
            lifetime_s=600,
            max_calls=1000,
            window=1024,
        )
        self.alter(accept)
        accept.signature = self.signature or self.keypair.sign_hex(accept.transcript())
        return accept.encode()


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, hostile: Hostile) -> None:
        self.hostile = hostile

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method == wire.OPEN_METHOD:
            return grpc.unary_unary_rpc_method_handler(self._open)
        if details.method == STREAM_METHOD:
            return grpc.unary_stream_rpc_method_handler(self._stream)
        if details.method.startswith("/axon.v1.Axon/"):
            return grpc.unary_unary_rpc_method_handler(self._call)
        return None

    async def _open(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        hostile = self.hostile
        hostile.opens += 1
        context.set_trailing_metadata(ANNOUNCE)
        if hostile.open_delay:
            await asyncio.sleep(hostile.open_delay)
        if hostile.open_refusal is not None:
            await context.abort(*hostile.open_refusal)
        return hostile.accept(request)

    async def _call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        hostile = self.hostile
        metadata = dict(context.invocation_metadata() or ())
        hostile.calls.append(metadata)
        context.set_trailing_metadata(ANNOUNCE)
        if wire.SESSION_KEY in metadata and hostile.call_refusal is not None:
            await context.abort(*hostile.call_refusal)
        return REPLY

    async def _stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """A stream that sends nothing for ``stream_silence`` seconds."""
        self.hostile.calls.append(dict(context.invocation_metadata() or ()))
        context.set_trailing_metadata(ANNOUNCE)
        await asyncio.sleep(self.hostile.stream_silence)
        return
        yield b""


@asynccontextmanager
async def serve_hostile(hostile: Hostile) -> AsyncIterator[Hostile]:
    """Serve ``hostile`` on a loopback port the system picks; its ``info`` says where."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_Handler(hostile),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    hostile.info = AxonInfo(
        version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=hostile.keypair.ss58_address, coldkey=""
    )
    try:
        yield hostile
    finally:
        await server.stop(None)
