"""gRPC over ASGI: the axon's methods, health and reflection as one ASGI application.

Each call to ``/axon.v1.Axon/{Name}`` becomes a :class:`~axon_grpc.server.call.Call` handed
to ``pipeline.handle``; the :class:`~axon_grpc.server.call.Outcome` goes back as gRPC: the
reply message (or the stream's messages) with the status and the axon's terminal info
in HTTP/2 trailers, or, for a refusal, a trailers-only response. The adapter enforces
``grpc-timeout`` itself (it cancels the call at its deadline and answers
DEADLINE_EXCEEDED), so the call says ``deadline_enforced``.

A small implementation of our own rather than a library: the project's contract
hashes the request message exactly as sent (so messages stay bytes, never parsed
here) and its methods are defined at run time, which generated-code runtimes such
as connect-python's do not serve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Protocol

from axon_grpc._aio import within
from axon_grpc.auth.session_wire import OPEN_METHOD
from axon_grpc.errors import GrpcStatus, SynapseParsingError
from axon_grpc.server.call import Call, Codec, Outcome, parse_peer
from axon_grpc.server.stream_writer import CUT, GONE, write_stream
from axon_grpc.transports.grpc_codec import METHOD_PREFIX, synapse_name
from axon_grpc.transports.grpc_wire import (
    Disconnected,
    MessageReader,
    Receive,
    WireError,
    encode_message,
    frame,
    parse_timeout,
)

logger = logging.getLogger("axon_grpc.edge")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Scope = Mapping[str, Any]

#: gRPC status numbers the adapter answers by itself (the one table's, :class:`~axon_grpc.errors.GrpcStatus`).
OK, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL = (
    GrpcStatus.OK,
    GrpcStatus.DEADLINE_EXCEEDED,
    GrpcStatus.UNIMPLEMENTED,
    GrpcStatus.INTERNAL,
)

CONTENT_TYPE = (b"content-type", b"application/grpc")
ACCEPT_ENCODING = (b"grpc-accept-encoding", b"identity")
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: How long a stream cut at its deadline (its caller reads nothing) may take to send its status.
CUT_STATUS_S = 0.1


class PipelineLike(Protocol):
    async def handle(self, call: Call) -> Outcome: ...


class CodecLike(Codec, Protocol):
    """The gRPC wire format (``axon_grpc.transports.grpc_codec.GRPC_CODEC``): put on each
    :class:`Call`, and the encoding of its Outcome."""

    def reply_message(self, outcome: Outcome) -> bytes: ...

    def stream_messages(self, outcome: Outcome) -> AsyncIterator[bytes]: ...

    def trailer_headers(self, outcome: Outcome) -> list[tuple[bytes, bytes]]: ...

    def status_number(self, outcome: Outcome) -> int: ...


#: Raw header pairs as ASGI carries them.
RawHeaders = list[tuple[bytes, bytes]]


def _status_headers(code: int, message: str, trailers: RawHeaders) -> RawHeaders:
    headers = [(b"grpc-status", str(code).encode())]
    if message:
        headers.append((b"grpc-message", encode_message(message).encode()))
    headers.extend(trailers)
    return headers


class GrpcStream:
    """One gRPC call's response side: start once, send messages, end with trailers."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def start(self) -> None:
        self.started = True
        await self.send(
            {"type": "http.response.start", "status": 200, "headers": [CONTENT_TYPE, ACCEPT_ENCODING], "trailers": True}
        )

    async def message(self, message: bytes) -> None:
        if not self.started:
            await self.start()
        await self.send({"type": "http.response.body", "body": frame(message), "more_body": True})

    async def reply(self, message: bytes, trailers: RawHeaders) -> None:
        """A unary call's whole successful answer: the message, then OK with ``trailers``."""
        self.started = True
        send = self.send
        await send(
            {"type": "http.response.start", "status": 200, "headers": [CONTENT_TYPE, ACCEPT_ENCODING], "trailers": True}
        )
        await send({"type": "http.response.body", "body": frame(message), "more_body": False})
        await send(
            {"type": "http.response.trailers", "headers": _status_headers(OK, "", trailers), "more_trailers": False}
        )

    async def finish(self, code: int, message: str = "", trailers: RawHeaders | None = None) -> None:
        """End the call: trailers after a started response, else a trailers-only response."""
        status = _status_headers(code, message, trailers or [])
        if self.started:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            await self.send({"type": "http.response.trailers", "headers": status, "more_trailers": False})
            return
        self.started = True
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [CONTENT_TYPE, ACCEPT_ENCODING, *status],
                "trailers": False,
            }
        )
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


#: A built-in service method: gets the request's message reader and the response stream.
ServiceMethod = Callable[[MessageReader, GrpcStream, Receive], Awaitable[None]]


def request_headers(scope: Scope) -> dict[str, str]:
    """The metadata as ``str`` (HTTP/2 field names are lowercase on the wire). A ``-bin``
    key's value is left as its latin-1 text: nothing reads those."""
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}


def _body_reader(reader: MessageReader, length: int) -> Callable[[], Awaitable[bytes]]:
    async def read_body() -> bytes:
        try:
            message = await reader.message(length)
            await reader.end()
        except WireError as e:
            raise SynapseParsingError(f"Improperly formatted request. {e.message}") from None
        return message

    return read_body


async def _until_disconnect(receive: Receive) -> None:
    """Return once the client has gone away or the response is complete (the body was read).

    Never cancelled: the server resolves the pending ``receive()`` with ``http.disconnect``
    once the response is complete (the ASGI spec), and pyvoy does not expect its
    receive futures to be cancelled.
    """
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return


class GrpcAsgi:
    """The ASGI application serving gRPC: the axon's methods plus built-in services.

    ``services`` maps full method paths (``/grpc.health.v1.Health/Check``) to
    :data:`ServiceMethod` callables; every other ``/axon.v1.Axon/{Name}`` goes to
    ``pipeline.handle``; anything else is UNIMPLEMENTED.
    """

    def __init__(
        self,
        pipeline: PipelineLike,
        codec: CodecLike,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        services: Mapping[str, ServiceMethod] | None = None,
        open_session: Callable[[Scope, MessageReader, GrpcStream], Awaitable[None]] | None = None,
    ) -> None:
        self.pipeline = pipeline
        #: ``/axon.v1.Session/Open`` when the axon serves sessions (it needs the caller's address).
        self.open_session = open_session
        self.codec = codec
        self.max_message_bytes = max_message_bytes
        self.services = dict(services or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        headers = request_headers(scope)
        stream = GrpcStream(send)
        encoding = headers.get("grpc-encoding", "identity")
        if encoding != "identity":
            await stream.finish(UNIMPLEMENTED, f"grpc-encoding {encoding} is not supported: use identity")
            return
        timeout = parse_timeout(headers.get("grpc-timeout"))
        reader = MessageReader(receive, self.max_message_bytes)
        try:
            async with asyncio.timeout(timeout):  # type: ignore[attr-defined]  # pyvoy needs Python >= 3.11
                if synapse_name(path) is not None:
                    deadline = None if timeout is None else time.monotonic() + timeout
                    await self._axon_call(scope, path, headers, deadline, reader, stream, receive)
                else:
                    service = self.services.get(path)
                    if path == OPEN_METHOD and self.open_session is not None:
                        await self.open_session(scope, reader, stream)
                    elif service is None:
                        await stream.finish(UNIMPLEMENTED, f"Method not found: {path}")
                    else:
                        await service(reader, stream, receive)
        except TimeoutError:
            await self._end(stream, DEADLINE_EXCEEDED, "Deadline Exceeded")
        except WireError as e:
            await self._end(stream, e.code, e.message)
        except Disconnected:
            return
        except Exception:
            logger.exception("gRPC call %s failed in the edge adapter", path)
            await self._end(stream, INTERNAL, "Internal Server Error")

    @staticmethod
    async def _end(stream: GrpcStream, code: int, message: str) -> None:
        try:
            await stream.finish(code, message)
        except Exception:  # the client is gone: nothing left to tell it
            logger.debug("could not send the gRPC status", exc_info=True)

    async def _axon_call(
        self,
        scope: Scope,
        path: str,
        headers: dict[str, str],
        deadline: float | None,
        reader: MessageReader,
        stream: GrpcStream,
        receive: Receive,
    ) -> None:
        length = await reader.length()  # size and compression are refused before the pipeline
        if length is None:
            raise WireError("request has no message")
        body = reader.complete(length)
        peer_ip, peer_port = parse_peer(scope.get("client"))
        call = Call(
            name=path[len(METHOD_PREFIX) :],
            headers=headers,
            codec=self.codec,
            body=body,
            # Not all here yet: read once the pipeline has checked what needs no body (a
            # stranger's half-sent message is refused without being held).
            read_body=None if body is not None else _body_reader(reader, length),
            peer_ip=peer_ip,
            peer_port=peer_port,
            deadline=deadline,
            deadline_enforced=deadline is not None,
            path=path,
        )
        codec = self.codec
        outcome = await self.pipeline.handle(call)
        if outcome.stream is None:
            if outcome.ok:
                await stream.reply(codec.reply_message(outcome), codec.trailer_headers(outcome))
                return
            await stream.finish(
                codec.status_number(outcome),
                "" if outcome.ok else outcome.message,
                codec.trailer_headers(outcome),
            )
            return
        await self._stream(outcome, stream, receive)

    async def _stream(self, outcome: Outcome, stream: GrpcStream, receive: Receive) -> None:
        """Send each message of a streaming answer with the one stream writer, then the status."""
        codec = self.codec
        watching = asyncio.ensure_future(_until_disconnect(receive))  # never cancelled (see there)
        ending = await write_stream(outcome, codec.stream_messages(outcome), stream.message, watching)
        if ending == GONE:
            return
        final = outcome.final
        finish = stream.finish(
            codec.status_number(final), "" if final.ok else final.message, codec.trailer_headers(final)
        )

        if ending == CUT:  # the caller reads nothing: say so if it can go out at once, never wait on it
            try:
                await within(finish, CUT_STATUS_S)
            except (asyncio.TimeoutError, TimeoutError, Exception):
                logger.debug("a cut stream's status could not be sent", exc_info=True)
            return
        await finish
        await watching  # receive() answers http.disconnect once the response is complete
