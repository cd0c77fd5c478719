"""The gRPC-over-HTTP/2 wire format, as an ASGI application sees it.

A request body is a sequence of length-prefixed messages: one flag byte (1 when the
message is compressed) and a 4-byte big-endian length, then that many bytes.
:class:`MessageReader` takes them off an ASGI ``receive`` one at a time, refusing a
message whose announced length passes the limit before reading it, so a body is never
held beyond the limit. The status travels in HTTP/2 trailers as ``grpc-status`` and
``grpc-message`` (percent-encoded); ``grpc-timeout`` sets the caller's deadline.
"""

from __future__ import annotations

import struct
from typing import Any, Awaitable, Callable

from axon_grpc.errors import GrpcStatus
from axon_grpc.transports.grpc_codec import metadata_value

#: ASGI's ``receive`` callable.
Receive = Callable[[], Awaitable[dict[str, Any]]]

_PREFIX = struct.Struct(">BI")
PREFIX_BYTES = _PREFIX.size

#: Seconds per ``grpc-timeout`` unit (the gRPC HTTP/2 spec: at most 8 digits, then a unit).
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class WireError(Exception):
    """A request that breaks the wire format; ``code`` is the gRPC status number to answer."""

    code: int = GrpcStatus.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MessageTooLarge(WireError):
    code = GrpcStatus.RESOURCE_EXHAUSTED


class CompressedMessage(WireError):
    code = GrpcStatus.UNIMPLEMENTED  #: only the identity encoding is served


class Disconnected(Exception):
    """The client went away before the request was complete."""


def frame(message: bytes) -> bytes:
    """``message`` with its uncompressed length prefix."""
    return _PREFIX.pack(0, len(message)) + message


def parse_timeout(value: str | None) -> float | None:
    """Seconds from a ``grpc-timeout`` value like ``"250m"``; None when absent or malformed."""
    if not value or len(value) > 9:
        return None
    digits, unit = value[:-1], value[-1]
    scale = _TIMEOUT_UNITS.get(unit)
    if scale is None or not digits.isdigit():
        return None
    return int(digits) * scale


def encode_message(text: str) -> str:
    """``grpc-message`` value: UTF-8, with bytes outside printable ASCII and ``%`` as ``%XX``."""
    return metadata_value(text)


def header_value(value: str) -> str:
    """A metadata value safe on the wire: anything but printable ASCII becomes ``?``."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in value)


class MessageReader:
    """Reads length-prefixed messages from an ASGI request body.

    Holds at most one message (and the next message's first bytes) at a time; a
    message announced larger than ``limit`` raises :class:`MessageTooLarge` before
    its bytes are read.
    """

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._buffer = bytearray()
        self._more = True

    @property
    def finished(self) -> bool:
        """True once the client ended the body and every message was read."""
        return not self._more and not self._buffer

    async def _fill(self, size: int) -> bool:
        """Read until ``size`` bytes are buffered; False when the body ended first."""
        while len(self._buffer) < size and self._more:
            event = await self._receive()
            kind = event["type"]
            if kind == "http.disconnect":
                raise Disconnected()
            if kind == "http.request":
                self._buffer += event.get("body", b"")
                self._more = bool(event.get("more_body", False))
        return len(self._buffer) >= size

    async def length(self) -> int | None:
        """Read the next message's prefix: its length (checked), or None at the end of the body."""
        if not await self._fill(PREFIX_BYTES):
            if self._buffer:
                raise WireError("request body ended inside a message prefix")
            return None
        compressed, length = _PREFIX.unpack_from(self._buffer)
        if compressed:
            raise CompressedMessage("compressed messages are not supported: send grpc-encoding identity")
        if length > self._limit:
            raise MessageTooLarge(f"request message too large: limit is {self._limit} bytes")
        return int(length)

    def complete(self, length: int) -> bytes | None:
        """The message of ``length`` (whose prefix was read) when it and the body's end are here."""
        if self._more or len(self._buffer) != PREFIX_BYTES + length:
            return None
        message = bytes(self._buffer[PREFIX_BYTES:])
        self._buffer.clear()
        return message

    async def message(self, length: int) -> bytes:
        """The message of ``length`` whose prefix :meth:`length` read."""
        end = PREFIX_BYTES + length
        if not await self._fill(end):
            raise WireError("request body ended inside a message")
        message = bytes(self._buffer[PREFIX_BYTES:end])
        del self._buffer[:end]
        return message

    async def next(self) -> bytes | None:
        """The next message, or None at the end of the body."""
        length = await self.length()
        return None if length is None else await self.message(length)

    async def end(self) -> None:
        """Check that the body holds no further message."""
        if await self.length() is not None:
            raise WireError("request has more than one message")

    async def only(self) -> bytes:
        """The request's single message (unary and server-streaming methods)."""
        message = await self.next()
        if message is None:
            raise WireError("request has no message")
        await self.end()
        return message
