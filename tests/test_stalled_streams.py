"""Issue 13.6: a streaming client that never reads gives its worker slot back at its deadline.

The forward produces more than any flow-control window holds, so the transport's write
blocks; the deadline comes from the signed ``timeout`` alone (no gRPC deadline), so the
axon itself must cut the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import grpc

from axon_grpc import StreamingSynapse
from axon_grpc.schema import schema_for
from axon_grpc.testing import serve_axon

from .support import Dummy, RawCaller, dummy_forward
from .test_bridge_client import serve_bridge

WORKERS = 2
CHUNK = "x" * (256 * 1024)
DEADLINE_S = 1.0


class Flood(StreamingSynapse):
    """Answers with chunks for as long as anyone takes them."""

    seed: int = 0


async def flood_forward(synapse: Flood):
    while True:
        yield CHUNK
        await asyncio.sleep(0)


async def _slots_free_within(axon, seconds: float) -> bool:
    limit = time.monotonic() + seconds
    while axon.admission.running and time.monotonic() < limit:
        await asyncio.sleep(0.05)
    return axon.admission.running == 0


async def test_grpc_streams_nobody_reads_free_their_slots_at_the_deadline() -> None:
    async with serve_axon(flood_forward, dummy_forward, max_workers=WORKERS, max_queue=4) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.info.hotkey)
        body = schema_for(Flood).to_bytes({"seed": 1})
        stalled = [
            raw.channel.unary_stream("/axon.v1.Axon/Flood")(
                body, metadata=raw.metadata(body, method="Flood", timeout=str(DEADLINE_S))
            )
            for _ in range(WORKERS)
        ]  # started, never read, no gRPC deadline: only the signed timeout bounds them
        try:
            await asyncio.sleep(0.3)
            assert h.axon.admission.running == WORKERS  # the floods hold every slot
            assert await _slots_free_within(h.axon, DEADLINE_S + 1.5), h.axon.admission.running
            result = await h.call(Dummy(input=2), timeout=2.0)
            assert result.dendrite.status_code == 200 and result.output == 4
        finally:
            for call in stalled:
                call.cancel()
            await raw.close()


async def test_http_streams_nobody_reads_free_their_slots_at_the_deadline(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve_bridge(flood_forward, dummy_forward, max_workers=WORKERS, max_queue=4) as b:
        sockets = []
        try:
            for _ in range(WORKERS):
                headers, body = b.client.prepare(Flood(seed=1), timeout=DEADLINE_S)
                sock = socket.create_connection(("127.0.0.1", b.client.http_port))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                sock.sendall(
                    f"POST /Flood HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n{head}\r\n{body}".encode()
                )
                sockets.append(sock)  # never read
            await asyncio.sleep(0.3)
            assert b.axon.admission.running == WORKERS
            assert await _slots_free_within(b.axon, DEADLINE_S + 1.5), b.axon.admission.running
            response = await b.client.call(Dummy(input=2), timeout=2.0)
            assert response.status == 200 and json.loads(response.text)["output"] == 4
        finally:
            for sock in sockets:
                sock.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_grpc_stream_read_to_the_deadline_ends_408() -> None:
    async with serve_axon(flood_forward, max_workers=WORKERS) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.info.hotkey)
        body = schema_for(Flood).to_bytes({"seed": 1})
        call = raw.channel.unary_stream("/axon.v1.Axon/Flood")(
            body, metadata=raw.metadata(body, method="Flood", timeout="0.5")
        )
        try:
            count = 0
            try:
                async for _ in call:
                    count += 1
            except grpc.aio.AioRpcError as e:
                assert e.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert count > 0
            assert await call.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            await raw.close()
