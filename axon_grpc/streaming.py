"""Streaming synapses: a forward that yields chunks, then the final synapse.

Over gRPC a streaming synapse is the server-streaming method
``/axon.v1.Axon/{Name}`` answering ``{Name}Stream`` messages: each carries either
``chunk`` (field 1, a ``{Name}Chunk`` whose ``data`` field holds one chunk of the
class's ``chunk_type``) or, last, ``final`` (field 2, the synapse's user fields).

A forward may be an async generator yielding chunks, or (the legacy shape) return
``synapse.create_streaming_response(token_streamer)`` where ``token_streamer(send)``
sends ASGI ``http.response.body`` messages; their bodies become the chunks.

On the client, a class that overrides ``process_streaming_response`` (the SDK's
shape: it reads ``response.content`` and fills fields such as ``completion``) gets
the chunks through it over gRPC too, as the bytes an HTTP body would carry
(:class:`StreamedBody`); what it yields is what the caller iterates.
"""

from __future__ import annotations

import asyncio
import codecs
import inspect
import threading
from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar

from pydantic import TypeAdapter, create_model

from axon_grpc.errors import InternalServerError
from axon_grpc.schema import SynapseSchema, schema_for
from axon_grpc.synapse import Synapse

#: Wire tags of the two fields of ``{Name}Stream`` (field number << 3 | length-delimited).
CHUNK_TAG = 0x0A
FINAL_TAG = 0x12

TokenStreamer = Callable[[Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


class StreamingResponse:
    """What a legacy streaming forward returns: the token streamer and its synapse."""

    def __init__(self, token_streamer: TokenStreamer, *, synapse: Synapse | None = None) -> None:
        self.token_streamer = token_streamer
        self.synapse = synapse


class StreamingSynapse(Synapse):
    """A synapse whose forward streams chunks of ``chunk_type`` before the final synapse."""

    #: The type of one streamed chunk (any type the protobuf mapping accepts).
    chunk_type: ClassVar[Any] = str

    def create_streaming_response(self, token_streamer: TokenStreamer) -> StreamingResponse:
        """Wrap a legacy ``token_streamer(send)`` as this synapse's streaming answer."""
        return StreamingResponse(token_streamer, synapse=self)

    async def process_streaming_response(self, response: Any) -> AsyncIterator[Any]:
        """Client side of the legacy HTTP protocol: yield the chunks of ``response``'s body,
        written as the bridge writes them (:func:`chunk_encoder`): ``str`` as UTF-8 text,
        ``bytes`` as is (both cut where the reads end, not where the axon's chunks did),
        any other chunk type one JSON line each. Override it for another body format."""
        kind = self.chunk_type
        if kind is bytes:
            async for data in response.content.iter_any():
                yield data
        elif kind is str:
            decoder = codecs.getincrementaldecoder("utf-8")()
            async for data in response.content.iter_any():
                if text := decoder.decode(data):
                    yield text
            if tail := decoder.decode(b"", final=True):
                yield tail
        else:
            adapter = chunk_adapter(type(self))
            async for line in response.content:
                if line.strip():
                    yield adapter.validate_json(line)

    def extract_response_json(self, response: Any) -> dict[str, Any]:
        """Client side of the legacy HTTP protocol: the synapse fields of a finished response."""
        return {}


def processes_chunks(cls: type) -> bool:
    """Whether ``cls`` reads its chunks itself: it overrides ``process_streaming_response``."""
    return getattr(cls, "process_streaming_response", None) is not StreamingSynapse.process_streaming_response


class _Content:
    """The part of aiohttp's ``StreamReader`` a ``process_streaming_response`` reads."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            for start in range(0, len(chunk), n):
                yield chunk[start : start + n]

    async def __aiter__(self) -> AsyncIterator[bytes]:  # line by line, as aiohttp iterates
        pending = b""
        async for chunk in self._chunks:
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self._chunks])


class StreamedBody:
    """A streamed answer shaped like the aiohttp response an SDK dendrite hands to
    ``process_streaming_response``: ``content`` yields each chunk's bytes as the HTTP
    bridge would send them (``str`` as UTF-8, ``bytes`` as is, other types as JSON lines)."""

    status = 200

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.content = _Content(chunks)
        self.headers: dict[str, str] = {}


_chunk_schemas: dict[type, SynapseSchema] = {}
_chunk_lock = threading.Lock()


def chunk_schema(cls: type[StreamingSynapse]) -> SynapseSchema:
    """The schema of ``{Name}Chunk``: one field ``data`` of ``cls.chunk_type`` (cached)."""
    found = _chunk_schemas.get(cls)
    if found is None:
        with _chunk_lock:
            found = _chunk_schemas.get(cls)
            if found is None:
                model = create_model(f"{cls.__name__}Chunk", data=(cls.chunk_type, ...))
                found = _chunk_schemas[cls] = schema_for(model)
    return found


_encoders: dict[type, Callable[[Any], bytes]] = {}
_adapters: dict[type, TypeAdapter[Any]] = {}


def chunk_adapter(cls: type[StreamingSynapse]) -> TypeAdapter[Any]:
    """The pydantic adapter of ``cls.chunk_type`` (cached)."""
    found = _adapters.get(cls)
    if found is None:
        found = _adapters[cls] = TypeAdapter(cls.chunk_type)
    return found


def chunk_encoder(cls: type[StreamingSynapse]) -> Callable[[Any], bytes]:
    """How a chunk is written to an HTTP body: ``str`` as UTF-8, ``bytes`` as is, else JSON lines."""
    found = _encoders.get(cls)
    if found is None:
        kind = cls.chunk_type
        if kind is str:
            found = _encode_text
        elif kind is bytes:
            found = bytes
        else:
            adapter = chunk_adapter(cls)
            found = lambda value: adapter.dump_json(value) + b"\n"  # noqa: E731
        _encoders[cls] = found
    return found


def _encode_text(value: Any) -> bytes:
    if not isinstance(value, str):
        raise InternalServerError(f"stream yielded a {type(value).__name__} chunk where str was declared")
    return value.encode("utf-8")


def is_streaming(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, StreamingSynapse)


def streaming_schemas(classes: Any) -> dict[str, SynapseSchema]:
    """``{name: chunk schema}`` for the streaming classes among ``classes``."""
    return {cls.__name__: chunk_schema(cls) for cls in classes if is_streaming(cls)}


# -- framing ---------------------------------------------------------------------------------
def varint(value: int) -> bytes:
    """A protobuf varint (base 128, least significant group first) of a non-negative ``value``."""
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def frame(tag: int, payload: bytes) -> bytes:
    """One ``{Name}Stream`` message holding ``payload`` in the field of ``tag``."""
    return bytes((tag,)) + varint(len(payload)) + payload


def unframe(message: bytes) -> tuple[int, bytes]:
    """``(tag, payload)`` of one ``{Name}Stream`` message; ValueError if malformed."""
    if not message or message[0] not in (CHUNK_TAG, FINAL_TAG):
        raise ValueError("stream message has neither chunk nor final")
    length = shift = 0
    index = 1
    while True:
        if index >= len(message) or shift > 63:
            raise ValueError("truncated stream message")
        byte = message[index]
        index += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if index + length != len(message):
        raise ValueError("stream message length does not match")
    return message[0], message[index:]


def encode_chunk(schema: SynapseSchema, value: Any, name: str) -> bytes:
    """A framed chunk; a value the chunk type cannot carry is a 500 naming the type."""
    try:
        return frame(CHUNK_TAG, schema.to_bytes({"data": value}))
    except (TypeError, ValueError) as e:
        raise InternalServerError(f"{name} stream yielded a {type(value).__name__} chunk it cannot send: {e}") from e


# -- running a streaming forward -----------------------------------------------------------------
async def open_stream(forward_fn: Callable[..., Any], synapse: StreamingSynapse, run_sync: Any) -> AsyncIterator[Any]:
    """The chunk iterator of a streaming forward, whichever shape it has."""
    if inspect.isasyncgenfunction(forward_fn):
        return forward_fn(synapse)  # type: ignore[no-any-return]
    if inspect.iscoroutinefunction(forward_fn):
        result = await forward_fn(synapse)
    else:
        result = await run_sync(forward_fn, synapse)
    if isinstance(result, StreamingResponse):
        return _legacy_chunks(result, type(synapse))
    if hasattr(result, "__anext__"):
        return result  # type: ignore[no-any-return]
    raise InternalServerError(
        f"streaming forward for {type(synapse).__name__} returned {type(result).__name__}; "
        "yield chunks or return synapse.create_streaming_response(token_streamer)"
    )


_END = object()


async def _legacy_chunks(response: StreamingResponse, cls: type[StreamingSynapse]) -> AsyncIterator[Any]:
    """Chunks from a legacy token streamer's ASGI body messages."""
    if cls.chunk_type not in (str, bytes):
        raise InternalServerError(f"{cls.__name__}: a token streamer needs chunk_type str or bytes")
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def send(message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.body" and message.get("body"):
            await queue.put(message["body"])

    task = asyncio.ensure_future(response.token_streamer(send))
    task.add_done_callback(lambda _: queue.put_nowait(_END))
    try:
        while (item := await queue.get()) is not _END:
            yield item.decode("utf-8") if cls.chunk_type is str else bytes(item)
        await task  # re-raise what the streamer raised
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
