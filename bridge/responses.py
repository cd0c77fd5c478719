"""Legacy response shapes: synapse headers, JSON bodies, and the error responses.

The legacy server answers with ``synapse.to_headers()``; rebuilding those per response
(JSON schema, recursive ``sys.getsizeof``) was most of its CPU. Here the same header
names and values come from the synapse's ``__dict__`` and a per-class cache, with one
deliberate difference: ``total_size`` is the response's size on the wire (JSON body
plus these headers) rather than CPython's recursive object size. No dendrite checks it.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, AsyncIterator, NamedTuple, Sequence

from starlette.responses import JSONResponse, Response, StreamingResponse

from axon_grpc.synapse import (
    AXON_PREFIX,
    DENDRITE_PREFIX,
    INPUT_OBJ_PREFIX,
    Synapse,
    TerminalInfo,
    hash_fields_of,
    legacy_body_hash,
)
from axon_grpc.synapse import input_obj_placeholder as input_placeholder

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.server.call import Outcome

#: Raw ASGI header pairs, as uvicorn sends them.
RawHeaders = list[tuple[bytes, bytes]]

JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class Reply(NamedTuple):
    """One finished HTTP answer: status, raw headers (content-length/type included), body."""

    status: int
    headers: RawHeaders
    body: bytes


class StreamReply(NamedTuple):
    """A streamed HTTP answer: status and headers, then each chunk as it comes."""

    status: int
    headers: RawHeaders
    chunks: AsyncIterator[bytes]
    #: The pipeline's outcome behind ``chunks``: its deadline bounds the writes (a client
    #: that stops reading is cut there), its ``cut`` ends the stream.
    outcome: Outcome


EVENT_STREAM_CONTENT_TYPE = (b"content-type", b"text/event-stream")


def stream_reply(
    synapse: Synapse,
    required_fields: Sequence[str],
    computed_hash: str,
    chunks: AsyncIterator[bytes],
    outcome: Outcome,
) -> StreamReply:
    """200 ``text/event-stream`` with the synapse's headers; the body is ``chunks``."""
    return StreamReply(
        200, [EVENT_STREAM_CONTENT_TYPE, *synapse_headers(synapse, required_fields, computed_hash, 0)], chunks, outcome
    )


def dump_json(content: Any) -> bytes:
    """Compact UTF-8 JSON, as Starlette's ``JSONResponse`` renders it."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def header_value(value: str) -> bytes:
    """A header-safe encoding: printable ASCII kept, anything else (CR, LF, non-ASCII) as ``?``."""
    if value.isascii() and value.isprintable():
        return value.encode("ascii")
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in value).encode("ascii")


_AXON_NAMES = {key: (AXON_PREFIX + key).encode("ascii") for key in TerminalInfo.model_fields}
_DENDRITE_NAMES = {key: (DENDRITE_PREFIX + key).encode("ascii") for key in TerminalInfo.model_fields}
_input_names: dict[str, bytes] = {}
_header_sizes: dict[tuple[int, int, int, int], bytes] = {}


def _input_name(field: str) -> bytes:
    found = _input_names.get(field)
    if found is None:
        found = _input_names[field] = header_value(INPUT_OBJ_PREFIX + field)
    return found


def _header_size(top: int, axon: int, dendrite: int, inputs: int) -> bytes:
    """``sys.getsizeof`` of the legacy server's header dict of this shape (cached).

    The figure depends on how that dict grew: a literal of ``name``/``timeout``, one
    ``update`` per terminal block, then one insertion per ``input_obj`` header.
    """
    key = (top, axon, dendrite, inputs)
    found = _header_sizes.get(key)
    if found is None:
        headers = {"name": "", "timeout": ""} if top == 2 else {"name": ""}
        headers.update({f"a{i}": "" for i in range(axon)})
        headers.update({f"d{i}": "" for i in range(dendrite)})
        for i in range(inputs):
            headers[f"i{i}"] = ""
        found = _header_sizes[key] = str(sys.getsizeof(headers)).encode("ascii")
    return found


def _block(names: dict[str, bytes], info: Any, out: RawHeaders) -> int:
    count = 0
    for key, value in info.__dict__.items():
        if value is not None:
            out.append((names[key], header_value(value) if type(value) is str else str(value).encode("ascii")))
            count += 1
    return count


def synapse_headers(
    synapse: Synapse, required_fields: Sequence[str], computed_hash: str, body_length: int
) -> RawHeaders:
    """``synapse.to_headers()``'s names, order and values (``total_size`` aside), encoded."""
    fields = synapse.__dict__
    out: RawHeaders = [(b"name", header_value(str(fields["name"])))]
    timeout = fields["timeout"]
    if timeout is not None:
        out.append((b"timeout", str(timeout).encode("ascii")))
    axon, dendrite = fields["axon"], fields["dendrite"]
    n_axon = _block(_AXON_NAMES, axon, out) if axon is not None else 0
    n_dendrite = _block(_DENDRITE_NAMES, dendrite, out) if dendrite is not None else 0
    n_inputs = 0
    for name in required_fields:
        encoded = input_placeholder(fields[name])
        if encoded is not None:
            out.append((_input_name(name), encoded.encode("ascii")))
            n_inputs += 1
    out.append((b"header_size", _header_size(2 if timeout is not None else 1, n_axon, n_dendrite, n_inputs)))
    hashed = computed_hash.encode("ascii")
    # Not the legacy recursive object size (~50 us): the JSON body plus the other headers.
    size = body_length + sum(len(k) + len(v) for k, v in out) + len(b"computed_body_hash") + len(hashed)
    out.append((b"total_size", str(size).encode("ascii")))
    out.append((b"computed_body_hash", hashed))
    return out


def status_headers(synapse: Synapse) -> RawHeaders:
    """``name`` and the axon's ``bt_header_axon_*`` block: what a btauth caller reads."""
    out: RawHeaders = [(b"name", header_value(str(synapse.name)))]
    if synapse.axon is not None:
        _block(_AXON_NAMES, synapse.axon, out)
    return out


def json_reply(status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> Reply:
    """A JSON reply: content-length and content-type first, then ``headers``."""
    return Reply(status, [(b"content-length", str(len(body)).encode("ascii")), JSON_CONTENT_TYPE, *headers], body)


def error_reply(synapse: Synapse, required_fields: Sequence[str] = (), hash_fields: tuple[str, ...] = ()) -> Reply:
    """The legacy error answer: ``{"message": ...}`` with the synapse's headers."""
    info = synapse.axon
    status = (info.status_code if info is not None else None) or 500
    message = (info.status_message if info is not None else None) or ""
    body = dump_json({"message": message})
    headers = synapse_headers(synapse, required_fields, legacy_body_hash(synapse, hash_fields), len(body))
    return json_reply(status, body, headers)


def json_invalid_detail(error: json.JSONDecodeError) -> list[dict[str, Any]]:
    """FastAPI's validation errors for a body that is not JSON."""
    return [
        {
            "type": "json_invalid",
            "loc": ["body", error.pos],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": error.msg},
        }
    ]


def json_invalid_reply(error: json.JSONDecodeError) -> Reply:
    """FastAPI's own 422 for a body that is not JSON (no synapse headers, as in the legacy server)."""
    return json_reply(422, dump_json({"detail": json_invalid_detail(error)}))


def to_response(reply: Reply | StreamReply) -> Response:
    """A Starlette response carrying ``reply`` byte for byte (streamed as it comes)."""
    if isinstance(reply, StreamReply):
        streamed = StreamingResponse(reply.chunks, status_code=reply.status)
        streamed.raw_headers = list(reply.headers)
        return streamed
    response = Response(content=reply.body, status_code=reply.status)
    response.raw_headers = list(reply.headers)
    return response


def create_error_response(synapse: Synapse) -> JSONResponse:
    """The legacy error response for ``synapse``: its status, ``{"message": ...}``, its headers.

    ``synapse.axon.status_code``/``status_message`` say what to answer (see
    :func:`~axon_grpc.server.pipeline.log_and_handle_error`).
    """
    reply = error_reply(synapse, type(synapse).get_required_fields(), hash_fields_of(synapse))
    response = JSONResponse(content=json.loads(reply.body), status_code=reply.status)
    response.raw_headers = list(reply.headers)
    return response
