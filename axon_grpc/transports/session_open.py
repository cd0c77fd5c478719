"""``/axon.v1.Session/Open`` (``axon-session/1``, R25) on both gRPC transports.

The method is outside ``axon.v1.Axon``: it calls no synapse and passes no pipeline stage.
Its message is read only once the open rate allows one from the caller's address
(:meth:`~axon_grpc.auth.sessions.Sessions.open`); the answer is the encoded
``SessionAccept``, or a status whose message names the rule, with the axon's contract and
session announcement in the trailers either way (and ``bt_header_axon_status_code`` /
``_message`` on a refusal, as every axon answer has).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Awaitable, Callable, Mapping

import grpc

from axon_grpc.auth.session_wire import MAX_MESSAGE_BYTES, OPEN_METHOD
from axon_grpc.auth.sessions import Sessions
from axon_grpc.errors import (
    AxonError,
    InternalServerError,
    RequestTooLarge,
    Status,
    SynapseParsingError,
    grpc_status_number,
)
from axon_grpc.schema.contract import RULE_SESSION_OPEN
from axon_grpc.server.call import parse_peer
from axon_grpc.synapse import AXON_PREFIX
from axon_grpc.transports.grpc_codec import CONTRACT_PAIRS, grpc_status_for, metadata_value

Pairs = tuple[tuple[str, str], ...]

logger = logging.getLogger("axon_grpc")


async def _opened(sessions: Sessions, read: Callable[[], Awaitable[bytes]], address: str | None) -> bytes:
    """:meth:`Sessions.open`; a failure that is no refusal (the nonce store down) becomes
    ``Internal Server Error #{id}``, its detail only in the log."""
    try:
        return await sessions.open(read, address)
    except AxonError:
        raise
    except Exception as e:
        error_id = str(uuid.uuid4())
        logger.exception("a session open failed: error id %s", error_id)
        raise InternalServerError(f"Internal Server Error #{error_id}") from e


def _message(error: AxonError) -> str:
    return f"{error.message} (rule {error.rule})" if error.rule is not None else error.message


def _answer_pairs(announce: Pairs, status: int, message: str | None) -> Pairs:
    pairs: Pairs = ((AXON_PREFIX + "status_code", str(status)),)
    if message is not None:
        pairs += ((AXON_PREFIX + "status_message", metadata_value(message)),)
    return pairs + CONTRACT_PAIRS + announce


class SessionService(grpc.GenericRpcHandler):
    """The open on grpc.aio: ``read`` takes a call's message off its context (the server's own
    reader); ``peer_header`` names the metadata key of the caller's address when an Envoy edge
    in front sets it (library mode behind Envoy), else the peer is the caller."""

    def __init__(
        self,
        sessions: Sessions,
        announce: Pairs,
        read: Callable[[grpc.aio.ServicerContext], Awaitable[bytes]],
        peer_header: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.announce = announce
        self.read = read
        self.peer_header = peer_header
        self._handler = grpc.stream_unary_rpc_method_handler(self._open)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handler if handler_call_details.method == OPEN_METHOD else None

    async def _open(self, requests: Any, context: grpc.aio.ServicerContext) -> bytes:
        if self.peer_header is not None:
            metadata = dict(context.invocation_metadata() or ())
            address, _ = parse_peer(str(metadata.get(self.peer_header, "")))
        else:
            address, _ = parse_peer(context.peer())
        try:
            reply = await _opened(self.sessions, lambda: self.read(context), address)
        except AxonError as e:
            message = _message(e)
            context.set_trailing_metadata(_answer_pairs(self.announce, int(e.status_code), message))
            await context.abort(grpc_status_for(int(e.status_code)), message)
        context.set_trailing_metadata(_answer_pairs(self.announce, Status.OK, None))
        return reply


def asgi_open(sessions: Sessions, announce: Pairs) -> Callable[..., Any]:
    """The open on the Envoy edge's ASGI adapter: ``(scope, reader, stream)``, as
    :class:`~axon_grpc.transports.grpc_asgi.GrpcAsgi` calls it."""
    raw = [(key.encode("ascii"), value.encode("ascii")) for key, value in announce]

    def trailers(status: int, message: str | None) -> list[tuple[bytes, bytes]]:
        return [(k.encode("ascii"), v.encode("ascii")) for k, v in _answer_pairs((), status, message)] + raw

    async def serve(scope: Mapping[str, Any], reader: Any, stream: Any) -> None:
        async def read() -> bytes:
            length = await reader.length()
            if length is None:
                raise SynapseParsingError("Improperly formatted session open: no message", rule=RULE_SESSION_OPEN)
            if length > MAX_MESSAGE_BYTES:
                raise RequestTooLarge(f"A session open has at most {MAX_MESSAGE_BYTES} bytes", rule=RULE_SESSION_OPEN)
            body = reader.complete(length)
            if body is None:
                body = await reader.message(length)
            await reader.end()
            return bytes(body)

        address, _ = parse_peer(scope.get("client"))
        try:
            reply = await _opened(sessions, read, address)
        except AxonError as e:
            message = _message(e)
            status = int(e.status_code)
            await stream.finish(grpc_status_number(status), message, trailers(status, message))
            return
        await stream.reply(reply, trailers(Status.OK, None))

    return serve
