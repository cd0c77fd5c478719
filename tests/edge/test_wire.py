"""The gRPC wire helpers: timeouts, grpc-message encoding, the bounded message reader."""

from __future__ import annotations

from typing import Any

import pytest

from axon_grpc.transports.grpc_wire import (
    CompressedMessage,
    Disconnected,
    MessageReader,
    MessageTooLarge,
    WireError,
    encode_message,
    frame,
    parse_timeout,
)


def test_parse_timeout() -> None:
    assert parse_timeout("250m") == pytest.approx(0.25)
    assert parse_timeout("3S") == 3.0
    assert parse_timeout("2H") == 7200.0
    assert parse_timeout("100u") == pytest.approx(1e-4)
    for bad in (None, "", "S", "12", "1x", "123456789S", "-1S"):
        assert parse_timeout(bad) is None


def test_encode_message() -> None:
    assert encode_message("plain text") == "plain text"
    assert encode_message("100%") == "100%25"
    assert encode_message("caf\u00e9\n") == "caf%C3%A9%0A"


def receiver(*chunks: bytes, disconnect: bool = False) -> Any:
    events: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    if disconnect:
        events[-1]["more_body"] = True
        events.append({"type": "http.disconnect"})
    seen: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        event = events.pop(0)
        seen.append(event)
        return event

    receive.seen = seen  # type: ignore[attr-defined]
    return receive


async def test_messages_split_across_chunks() -> None:
    body = frame(b"first") + frame(b"") + frame(b"third")
    reader = MessageReader(receiver(body[:3], body[3:9], body[9:]), limit=100)
    assert [await reader.next(), await reader.next(), await reader.next(), await reader.next()] == [
        b"first",
        b"",
        b"third",
        None,
    ]
    assert reader.finished


async def test_too_large_is_refused_before_the_body_is_read() -> None:
    receive = receiver(frame(b"x" * 10)[:5], b"x" * 10)
    with pytest.raises(MessageTooLarge):
        await MessageReader(receive, limit=9).next()
    assert len(receive.seen) == 1  # the message's bytes were never asked for


async def test_only_one_message() -> None:
    assert await MessageReader(receiver(frame(b"a")), 10).only() == b"a"
    with pytest.raises(WireError):
        await MessageReader(receiver(frame(b"a") + frame(b"b")), 10).only()
    with pytest.raises(WireError):
        await MessageReader(receiver(b""), 10).only()
    with pytest.raises(WireError):
        await MessageReader(receiver(frame(b"abc")[:-1]), 10).only()


async def test_compressed_and_disconnected() -> None:
    with pytest.raises(CompressedMessage):
        await MessageReader(receiver(b"\x01" + frame(b"a")[1:]), 10).next()
    with pytest.raises(Disconnected):
        await MessageReader(receiver(frame(b"abc")[:4], disconnect=True), 10).next()
