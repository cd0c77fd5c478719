"""The Dendrite's HTTP transport against a hostile miner on loopback: a huge or endless
answer, JSON nested past the parser, an answer trickled byte by byte. Each call ends
with a status within its timeout, holding a bounded amount of the answer."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Awaitable, Callable

import pytest

from axon_grpc import AxonInfo, Dendrite, KeypairWallet

from .support import Dummy

Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]
LIMIT = 1024 * 1024
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # the default limit


class Miner:
    """A raw HTTP/1.1 server that reads a request head and answers with ``reply``."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sent = 0
        self.server: asyncio.AbstractServer | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self.reply(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stream(self, writer: asyncio.StreamWriter, chunk: bytes, count: int, pause: float = 0.0) -> None:
        """``count`` writes of ``chunk`` (bounded), stopping when the client goes."""
        for _ in range(count):
            if writer.is_closing():
                return
            writer.write(chunk)
            await writer.drain()
            self.sent += len(chunk)
            if pause:
                await asyncio.sleep(pause)


async def serve(miner: Miner) -> AsyncIterator[AxonInfo]:
    miner.server = await asyncio.start_server(miner._serve, "127.0.0.1", 0)
    port = miner.server.sockets[0].getsockname()[1]
    try:
        yield AxonInfo(
            version=0,
            ip="127.0.0.1",
            port=port,
            ip_type=4,
            hotkey=KeypairWallet.generate().hotkey.ss58_address,
            coldkey="",
        )
    finally:
        miner.server.close()
        await miner.server.wait_closed()


async def call(miner: Miner, timeout: float = 5.0, limit: int = LIMIT) -> tuple[Dummy, float]:
    dendrite = Dendrite(KeypairWallet.generate(), transport="http")
    dendrite.http.max_answer_bytes = limit
    try:
        async for info in serve(miner):
            start = time.monotonic()
            result = await dendrite.forward(info, Dummy(input=3), timeout=timeout, deserialize=False)
            return result, time.monotonic() - start
    finally:
        await dendrite.aclose()
    raise AssertionError("unreachable")


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"


async def test_an_endless_answer_is_cut_at_the_limit() -> None:
    miner = Miner(lambda w: endless(miner, w))

    async def endless(m: Miner, writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + b"transfer-encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        await m.stream(writer, chunk, count=2000)  # 128 MiB at most

    result, took = await call(miner)
    assert result.dendrite.status_code == 413
    assert result.dendrite.status_message == f"Answer too large: limit is {LIMIT} bytes"
    assert took < 5
    assert miner.sent < 16 * LIMIT  # the dendrite stopped reading


async def test_an_announced_huge_answer_is_refused_before_its_body() -> None:
    async def huge(writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + b"content-length: %d\r\n\r\n" % (10 * MAX_ANSWER_BYTES))
        await miner.stream(writer, b"[" * 65536, count=10)

    miner = Miner(huge)
    result, took = await call(miner, limit=MAX_ANSWER_BYTES)
    assert result.dendrite.status_code == 413
    assert took < 5


async def test_json_nested_past_the_parser_is_a_failed_answer() -> None:
    body = b"[" * 200_000

    async def deep(writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + b"content-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    result, _ = await call(Miner(deep))
    assert result.dendrite.status_code == 422
    assert "nested too deeply" in str(result.dendrite.status_message)


@pytest.mark.parametrize("where", ["head", "body"])
async def test_a_trickled_answer_costs_its_timeout_only(where: str) -> None:
    body = b'{"output": 6}'

    async def trickle(writer: asyncio.StreamWriter) -> None:
        head = HEAD + b"content-length: %d\r\n\r\n" % len(body)
        if where == "head":
            for byte in head:
                await miner.stream(writer, bytes([byte]), count=1, pause=0.1)
        else:
            writer.write(head)
            for byte in body:
                await miner.stream(writer, bytes([byte]), count=1, pause=0.3)

    miner = Miner(trickle)
    result, took = await call(miner, timeout=1.0)
    assert result.dendrite.status_code == 408
    assert took < 2.0
