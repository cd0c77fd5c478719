"""Request bounds of the bridge: body size (413), header count and size (431)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, MutableMapping

from axon_grpc._aio import within
from axon_grpc.errors import RequestTimeout, RequestTooLarge, SynapseParsingError

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

#: Default bounds on request headers (the body bound comes from ``axon.max_request_bytes``).
DEFAULT_MAX_HEADER_COUNT = 100
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
#: Default time limit on receiving a request body (a client trickling it holds a connection).
DEFAULT_BODY_TIMEOUT_S = 30.0


@dataclass
class Limits:
    """Per-request bounds; every one is checked before the pipeline sees the request."""

    max_request_bytes: int  #: request body, checked on Content-Length and while streaming (413)
    max_header_count: int = DEFAULT_MAX_HEADER_COUNT  #: number of request headers (431)
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES  #: names plus values of all headers (431)
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S  #: reading the whole body (408 past it)

    def header_problem(self, count: int, size: int) -> str | None:
        """Why headers of this shape are refused, or None."""
        if count > self.max_header_count:
            return f"Request headers too many: limit is {self.max_header_count} headers"
        if size > self.max_header_bytes:
            return f"Request headers too large: limit is {self.max_header_bytes} bytes"
        return None

    def body_problem(self, content_length: str | None) -> str | None:
        """Why a declared Content-Length is refused, or None (absent: checked while reading)."""
        if content_length is not None and content_length.isdigit() and int(content_length) > self.max_request_bytes:
            return self.too_large_message()
        return None

    def too_large_message(self) -> str:
        return f"Request body too large: limit is {self.max_request_bytes} bytes"


async def read_body(receive: Receive, limits: Limits) -> bytes:
    """The whole request body, refusing it once it passes ``limits.max_request_bytes`` (413)
    or when its pieces take longer than ``limits.body_timeout_s`` to arrive (408).

    The common case, a body that came whole with its head, arms no timer here (the
    pipeline bounds every body read by the call's time limit anyway)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if message["type"] == "http.request" and not message.get("more_body", False):
        if len(body) > limits.max_request_bytes:
            raise RequestTooLarge(limits.too_large_message())
        return body
    try:
        return await within(_read_rest(receive, limits, message), limits.body_timeout_s)
    except (asyncio.TimeoutError, TimeoutError):
        raise RequestTimeout(f"Request body not received within {limits.body_timeout_s:g} s") from None


async def _read_rest(receive: Receive, limits: Limits, message: Message) -> bytes:
    limit = limits.max_request_bytes
    chunks = [message.get("body", b"")]
    size = len(chunks[0])
    while True:
        if message["type"] == "http.disconnect":
            raise SynapseParsingError("Improperly formatted request. The client left before sending the whole body")
        if size > limit:
            raise RequestTooLarge(limits.too_large_message())
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)


def guarded_receive(receive: Receive, limits: Limits) -> Receive:
    """``receive`` for the fallback app: past the body bound, the client looks gone."""
    seen = 0

    async def guarded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limits.max_request_bytes:
                return {"type": "http.disconnect"}
        return message

    return guarded


def header_map(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], int]:
    """Lowercase-keyed str headers (last one wins) and their total size in bytes."""
    headers: dict[str, str] = {}
    size = 0
    for key, value in raw:
        size += len(key) + len(value)
        headers[key.decode("latin-1").lower()] = value.decode("latin-1")
    return headers, size
