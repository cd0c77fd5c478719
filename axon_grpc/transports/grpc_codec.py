"""An :class:`~axon_grpc.server.call.Outcome` in gRPC terms, for every gRPC transport.

The grpc.aio server and the Envoy edge's ASGI adapter both answer with these: the
response message bytes, the framed messages of a stream, the status code and the
trailing metadata that carries the axon's terminal info (``bt_header_axon_*``).
Metadata values are printable ASCII: anything else is percent-encoded as the gRPC
HTTP/2 spec encodes ``grpc-message`` (so a status message with a newline or a
non-ASCII character survives).
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any, AsyncIterator
from urllib.parse import quote

import grpc

from axon_grpc.auth.legacy import check_grpc_body_hash, reply_hash
from axon_grpc.errors import GrpcStatus, SynapseParsingError, grpc_status_number, status_of_grpc_number
from axon_grpc.metrics.observer import GRPC
from axon_grpc.schema.contract import CONTRACT_ANNOUNCEMENT, CONTRACT_TRAILER
from axon_grpc.server.call import Outcome
from axon_grpc.streaming import FINAL_TAG, chunk_schema, encode_chunk, frame
from axon_grpc.synapse import AXON_PREFIX, Synapse, TerminalInfo
from axon_grpc.transports.aio_discovery import SERVICE_NAME

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.server.endpoints import Endpoint

#: The path of synapse ``{Name}``'s method is this prefix and the name.
METHOD_PREFIX = f"/{SERVICE_NAME}/"


def synapse_name(method: str) -> str | None:
    """``Dummy`` for ``/axon.v1.Axon/Dummy``; None for other services."""
    if method.startswith(METHOD_PREFIX):
        return method[len(METHOD_PREFIX) :]
    return None


#: ``bt_header_axon_{field}`` for each terminal-info field, built once.
_NAMES = {key: AXON_PREFIX + key for key in TerminalInfo.model_fields}
#: Bytes kept as they are in an encoded metadata value (printable ASCII but ``%``).
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def metadata_value(value: str) -> str:
    """``value`` as printable ASCII, percent-encoding (UTF-8) what is not."""
    if value.isascii() and value.isprintable() and "%" not in value:
        return value
    return quote(value, safe=_SAFE)


#: Fields that change per answer; the others (ip, port, version, uuid, hotkey) are the axon's
#: identity, whose encoded pairs are built once per identity.
_PER_ANSWER = ("status_code", "status_message", "process_time", "nonce", "signature")
#: Not sent over gRPC: the axon's ip and port, which the caller dialled (the legacy HTTP
#: answer carries them, as the SDK's does).
_NOT_SENT = ("ip", "port")
_IDENTITY = tuple(key for key in TerminalInfo.model_fields if key not in _PER_ANSWER and key not in _NOT_SENT)
_identity_of = itemgetter(*_IDENTITY)  # a terminal info's identity values, as one tuple
_Pairs = tuple[tuple[str, str], ...]
_RawPairs = tuple[tuple[bytes, bytes], ...]
_identity_pairs: dict[tuple[object, ...], tuple[_Pairs, _RawPairs]] = {}
_PER_ANSWER_NAMES = tuple((key, _NAMES[key]) for key in _PER_ANSWER)
_PER_ANSWER_BYTE_NAMES = tuple((key, _NAMES[key].encode("ascii")) for key in _PER_ANSWER)


def _text(value: object) -> str:
    """A value as metadata text: an int or a float prints as ASCII (digits, sign, point,
    exponent, inf, nan), so only other values need :func:`metadata_value`."""
    if type(value) is str:
        return metadata_value(value)
    if type(value) is int or type(value) is float:
        return str(value)
    return metadata_value(str(value))


#: ``axon-contract: axon.v1;rules=N`` on every answer: the contract and rules this axon speaks (rule R22).
CONTRACT_PAIRS: _Pairs = ((CONTRACT_TRAILER, CONTRACT_ANNOUNCEMENT),)
_CONTRACT_RAW: _RawPairs = ((CONTRACT_TRAILER.encode("ascii"), CONTRACT_ANNOUNCEMENT.encode("ascii")),)


def _identity(values: dict[str, object]) -> tuple[_Pairs, _RawPairs]:
    """The encoded identity pairs of one axon and the contract pair after them (as text and
    as bytes): every answer's last pairs, built once per identity."""
    identity = _identity_of(values)
    found = _identity_pairs.get(identity)
    if found is None:
        if len(_identity_pairs) > 64:  # one axon has one identity; bound it anyway
            _identity_pairs.clear()
        text = tuple((_NAMES[key], _text(value)) for key, value in zip(_IDENTITY, identity) if value is not None)
        raw = tuple((name.encode("ascii"), value.encode("ascii")) for name, value in text)
        found = _identity_pairs[identity] = (text + CONTRACT_PAIRS, raw + _CONTRACT_RAW)
    return found


def trailing_metadata(outcome: Outcome) -> tuple[tuple[str, str], ...]:
    """The axon's terminal info as ``bt_header_axon_*`` pairs, and the contract it speaks."""
    info = outcome.synapse.axon
    if info is None:
        return CONTRACT_PAIRS
    values = info.__dict__
    changing = tuple((name, _text(values[key])) for key, name in _PER_ANSWER_NAMES if values[key] is not None)
    return changing + _identity(values)[0]


def trailer_headers(outcome: Outcome) -> list[tuple[bytes, bytes]]:
    """:func:`trailing_metadata` as raw HTTP/2 header pairs (the identity encoded once)."""
    info = outcome.synapse.axon
    if info is None:
        return list(_CONTRACT_RAW)
    values = info.__dict__
    out = []
    for key, name in _PER_ANSWER_BYTE_NAMES:
        value = values[key]
        if value is not None:
            out.append((name, _text(value).encode("ascii")))
    out.extend(_identity(values)[1])
    return out


#: ``grpc.StatusCode`` by number: the status table's numbers in grpcio's terms.
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def grpc_status_for(http_status: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of an HTTP-style status (the one table; unknown codes are INTERNAL)."""
    return _STATUS_CODES[grpc_status_number(http_status)]


def http_status_for(code: grpc.StatusCode) -> int:
    """The HTTP-style status of a ``grpc.StatusCode`` (unknown statuses are 500)."""
    return status_of_grpc_number(code.value[0])


def status_number(outcome: Outcome) -> int:
    """The gRPC status number of the outcome (the one status table)."""
    return GrpcStatus.OK if outcome.ok else grpc_status_number(outcome.status)


def status_code(outcome: Outcome) -> grpc.StatusCode:
    """:func:`status_number` as a ``grpc.StatusCode`` (for grpc.aio)."""
    return _STATUS_CODES[status_number(outcome)]


def reply_message(outcome: Outcome) -> bytes:
    """The response message of a successful unary call: the synapse's user fields."""
    endpoint = outcome.endpoint
    assert endpoint is not None and outcome.ok
    if outcome.reply is not None:
        return outcome.reply
    return endpoint.schema.to_bytes(outcome.synapse)


async def stream_messages(outcome: Outcome) -> AsyncIterator[bytes]:
    """A streaming answer's messages: ``{Name}Stream.chunk`` each, then ``final`` on success.

    Once this ends, ``outcome.final`` is the call's result (a failure midway included).
    """
    endpoint = outcome.endpoint
    assert endpoint is not None
    if outcome.stream is not None:
        codec = chunk_schema(endpoint.synapse_class)  # type: ignore[arg-type]
        name = endpoint.name
        async for message in outcome.encoded(lambda chunk: encode_chunk(codec, chunk, name)):
            yield message
    final = outcome.final
    if final.ok:
        yield frame(FINAL_TAG, endpoint.schema.to_bytes(final.synapse))


class GrpcCodec:
    """The protobuf message of ``/axon.v1.Axon/{Name}`` (:class:`~axon_grpc.server.call.Codec`):
    the legacy hash is over the method path and the message bytes as sent
    (:func:`~axon_grpc.auth.legacy.grpc_body_hash`), a signed answer's over the reply bytes.

    ``trailers``: pairs every answer carries after the contract's (an axon's announcement of
    ``axon-sessions``): one codec per set of them, built once."""

    transport = GRPC
    names_rules = True

    def __init__(self, trailers: tuple[tuple[str, str], ...] = ()) -> None:
        self.trailers = trailers
        self._raw = [(key.encode("ascii"), value.encode("ascii")) for key, value in trailers]

    def trailing_metadata(self, outcome: Outcome) -> tuple[tuple[str, str], ...]:
        """:func:`trailing_metadata` and this codec's own trailers."""
        pairs = trailing_metadata(outcome)
        return pairs + self.trailers if self.trailers else pairs

    def trailer_headers(self, outcome: Outcome) -> list[tuple[bytes, bytes]]:
        """:func:`trailer_headers` and this codec's own trailers."""
        headers = trailer_headers(outcome)
        if self._raw:
            headers.extend(self._raw)
        return headers

    @staticmethod
    def check_message_hash(path: str, body: bytes, claimed: str) -> bool:
        check_grpc_body_hash(path, body, claimed)
        return True

    @staticmethod
    def decode(endpoint: Endpoint, body: bytes) -> tuple[dict[str, Any], Any]:
        try:
            return endpoint.schema.from_bytes(body), None
        except ValueError as e:
            raise SynapseParsingError(f"Improperly formatted request. Could not parse body: {e}") from None

    @staticmethod
    def answer_hash(endpoint: Endpoint, synapse: Synapse) -> tuple[bytes | None, str]:
        reply = endpoint.schema.to_bytes(synapse)
        return reply, reply_hash(reply)

    # the answer side, for the transports
    reply_message = staticmethod(reply_message)
    stream_messages = staticmethod(stream_messages)
    status_number = staticmethod(status_number)


GRPC_CODEC = GrpcCodec()
