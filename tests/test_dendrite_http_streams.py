"""Streaming synapses over the Dendrite's legacy HTTP transport: from this project's bridge
(``text/event-stream``), chosen by ``auto``, and bounded against a hostile miner that
streams forever, trickles, or sends more than ``max_answer_bytes``."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from axon_grpc import AxonInfo, Dendrite, KeypairWallet, StreamingSynapse

from .test_bridge_client import serve_bridge
from .test_bridge_streaming import ATTACHED, Endless, Legacy, Point, Points, Story


def http_info(info: AxonInfo, http_port: int) -> AxonInfo:
    return dataclasses.replace(info, port=http_port)


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def test_bridge_stream_over_http_matches_grpc() -> None:
    async with serve_bridge(*ATTACHED) as bridged:
        grpc_info = bridged.axon.info()
        targets = {"grpc": grpc_info, "http": http_info(grpc_info, int(bridged.axon.http_port))}
        for transport, target in targets.items():
            dendrite = Dendrite(KeypairWallet.generate(), transport=transport)
            try:
                *chunks, final = await collect(
                    await dendrite.forward(target, Story(words=3), timeout=5.0, streaming=True, deserialize=False)
                )
                points = await collect(dendrite.call_stream(target, Points(n=3), timeout=5.0))
                legacy = await collect(dendrite.call_stream(target, Legacy(n=3), timeout=5.0))
            finally:
                await dendrite.aclose()
            assert "".join(chunks) == "w0 w1 w2 ", transport
            assert (final.dendrite.status_code, final.dendrite.status_message) == (200, "Success"), transport
            assert final.axon.status_code == 200 and final.axon.hotkey == bridged.hotkey
            assert final.dendrite.process_time > 0
            assert points[:-1] == [Point(x=0), Point(x=1), Point(x=2)], transport
            assert "".join(legacy[:-1]) == "tok0|tok1|tok2|", transport


async def test_bridge_refusal_before_the_first_chunk_keeps_its_status_over_http() -> None:
    async with serve_bridge(*ATTACHED) as bridged:
        target = http_info(bridged.axon.info(), int(bridged.axon.http_port))
        dendrite = Dendrite(KeypairWallet.generate(), transport="http")
        try:
            items = await collect(dendrite.call_stream(target, Story(words=13), timeout=5.0, deserialize=False))
        finally:
            await dendrite.aclose()
    assert len(items) == 1
    assert items[0].dendrite.status_code == 403
    assert items[0].dendrite.status_message == "Forbidden. Key is blacklisted: unlucky."


async def test_auto_streams_over_whichever_protocol_answers_and_remembers_it() -> None:
    async with serve_bridge(*ATTACHED) as bridged:
        grpc_info = bridged.axon.info()
        legacy_info = http_info(grpc_info, int(bridged.axon.http_port))
        dendrite = Dendrite(KeypairWallet.generate(), transport="auto")
        try:
            for target, learned in ((grpc_info, "grpc"), (legacy_info, "http")):
                *chunks, final = await collect(dendrite.call_stream(target, Story(words=2), timeout=5.0))
                assert "".join(chunks) == "w0 w1 "
                assert final.dendrite.status_code == 200, final.dendrite.status_message
                assert dendrite.transport_for(target) == learned
        finally:
            await dendrite.aclose()


async def test_endless_bridge_stream_over_http_ends_at_the_timeout() -> None:
    async with serve_bridge(*ATTACHED) as bridged:
        target = http_info(bridged.axon.info(), int(bridged.axon.http_port))
        dendrite = Dendrite(KeypairWallet.generate(), transport="http")
        started = time.monotonic()
        try:
            *chunks, final = await collect(dendrite.call_stream(target, Endless(), timeout=0.5, deserialize=False))
        finally:
            await dendrite.aclose()
    assert time.monotonic() - started < 0.5 + 2.5  # the stream is endless: it ended at the timeout
    assert "tick" in "".join(chunks)
    assert (final.dendrite.status_code, final.dendrite.status_message) == (408, "Request timeout after 0.5 seconds")


@pytest.mark.parametrize("transport", ["grpc", "http", "auto"])
async def test_verify_response_refuses_streams_clearly(transport: str) -> None:
    async with serve_bridge(*ATTACHED) as bridged:
        info = bridged.axon.info()
        target = info if transport == "grpc" else http_info(info, int(bridged.axon.http_port))
        dendrite = Dendrite(KeypairWallet.generate(), transport=transport, verify_response=True)
        try:
            items = await collect(dendrite.call_stream(target, Story(words=2), timeout=5.0, deserialize=False))
            plain = await dendrite.call(target, Story(words=2), timeout=5.0, deserialize=False)
        finally:
            await dendrite.aclose()
    for final in (items[0], plain):
        assert len(items) == 1
        assert final.dendrite.status_code == 422
        assert final.dendrite.status_message == (
            "Answer not verified: streamed answers are not signed (verify_response covers unary calls only)"
        )


# -- a hostile miner ---------------------------------------------------------------------------

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


class Hostile:
    """A raw HTTP/1.1 server: reads the request head, answers ``200 text/event-stream``
    chunked, then lets ``body(writer)`` write what it likes."""

    def __init__(self, body: Writer) -> None:
        self.body = body
        self.requests = 0
        self.tasks: list[asyncio.Task[Any]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                b"bt_header_axon_status_code: 200\r\nbt_header_axon_status_message: Success\r\n\r\n"
            )
            await self.body(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> AxonInfo:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        hotkey = KeypairWallet.generate().hotkey.ss58_address
        return AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=hotkey, coldkey="")

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.server.close()
        await self.server.wait_closed()


async def flood(writer: asyncio.StreamWriter) -> None:
    """64 KiB chunks as fast as the client reads them, forever."""
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    while True:
        writer.write(chunk)
        await writer.drain()


async def trickle(writer: asyncio.StreamWriter) -> None:
    """One byte every 20 ms, forever."""
    while True:
        writer.write(b"1\r\nx\r\n")
        await writer.drain()
        await asyncio.sleep(0.02)


async def one_huge_chunk(writer: asyncio.StreamWriter) -> None:
    """A chunk that says it holds 1 GiB, and keeps writing it."""
    writer.write(b"40000000\r\n")
    while True:
        writer.write(b"y" * 0x10000)
        await writer.drain()


class Raw(StreamingSynapse):
    chunk_type = bytes


class Collecting(StreamingSynapse):
    """Keeps every byte it reads, as many SDK subnets' synapses do."""

    kept: bytes = b""

    async def process_streaming_response(self, response: Any) -> AsyncIterator[str]:
        self.kept = await response.content.read()
        yield ""


async def stream_from(
    body: Writer, synapse: StreamingSynapse, timeout: float, **dendrite_kwargs: Any
) -> tuple[list[Any], Any, float, int]:
    async with Hostile(body) as target:
        dendrite = Dendrite(KeypairWallet.generate(), transport="http", **dendrite_kwargs)
        started = time.monotonic()
        received = 0
        chunks: list[Any] = []
        final = None
        try:
            async for item in dendrite.call_stream(target, synapse, timeout=timeout, deserialize=False):
                if isinstance(item, StreamingSynapse):
                    final = item
                else:
                    received += len(item)
                    chunks.append(None)  # keep none of it: only the Dendrite's own memory counts
        finally:
            await dendrite.aclose()
        return chunks, final, time.monotonic() - started, received


async def test_verify_response_sends_no_stream() -> None:
    hostile = Hostile(flood)
    async with hostile as target:
        dendrite = Dendrite(KeypairWallet.generate(), transport="http", verify_response=True)
        try:
            items = await collect(dendrite.call_stream(target, Raw(), timeout=5.0, deserialize=False))
        finally:
            await dendrite.aclose()
    assert [item.dendrite.status_code for item in items] == [422]
    assert hostile.requests == 0


@pytest.mark.parametrize("body", [flood, trickle, one_huge_chunk])
async def test_hostile_stream_ends_at_the_timeout(body: Writer) -> None:
    _, final, elapsed, _ = await stream_from(body, Raw(), 0.6, max_answer_bytes=1 << 40)
    assert elapsed < 0.6 + 2.5  # the body never ends on its own
    assert (final.dendrite.status_code, final.dendrite.status_message) == (408, "Request timeout after 0.6 seconds")


@pytest.mark.parametrize("body", [flood, one_huge_chunk])
async def test_hostile_stream_past_max_answer_bytes_is_cut(body: Writer) -> None:
    limit = 1 << 20
    _, final, elapsed, received = await stream_from(body, Raw(), 10.0, max_answer_bytes=limit)
    assert elapsed < 5.0
    assert received <= limit
    assert final.dendrite.status_code == 413
    assert final.dendrite.status_message == f"Answer too large: limit is {limit} bytes"


async def test_a_synapse_that_keeps_everything_is_cut_too() -> None:
    limit = 1 << 20
    _, final, _, _ = await stream_from(flood, Collecting(), 10.0, max_answer_bytes=limit)
    assert final.dendrite.status_code == 413
    assert final.kept == b""


async def test_an_endless_json_line_is_refused() -> None:
    async def no_newline(writer: asyncio.StreamWriter) -> None:
        writer.write(b"10000\r\n" + b"{" * 0x10000 + b"\r\n")
        await flood(writer)

    _, final, elapsed, _ = await stream_from(no_newline, Points(), 10.0)
    assert elapsed < 5.0
    assert final.dendrite.status_code == 422
    assert final.dendrite.status_message.startswith("Failed to parse response: ")
