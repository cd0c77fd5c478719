"""Issue 13.6: a streaming client that never reads gives its worker slot back at its deadline.

The forward produces more than any flow-control window holds, so the transport's write
blocks; the deadline comes from the signed ``timeout`` alone (no gRPC deadline), so the
axon itself must cut the stream. On every transport: grpc.aio, the HTTP bridge, and the
Envoy edge of ``axon-grpc serve`` (issue 25), there with a raw HTTP/2 client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import grpc
import h2.config
import h2.connection

from axon_grpc import Dendrite
from axon_grpc.schema import schema_for
from axon_grpc.testing import serve_axon

from .edge.support import requires_pyvoy, stop
from .edge.test_serve_axon import AXON_HOTKEY, serve
from .edge.test_serve_axon import info as _info
from .support import Dummy, Flood, RawCaller, dummy_forward, flood_forward, settles_to
from .test_bridge_client import serve_bridge
from .test_metrics import scrape, value

WORKERS = 2
DEADLINE_S = 1.0
#: Through Envoy the holding state is seen by scraping the metrics of another process: a
#: longer deadline, so that a loaded machine sees the floods hold their slots before the cut.
ENVOY_DEADLINE_S = 5.0


def _running(axon):
    async def probe() -> int:
        return int(axon.admission.running)

    return probe


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
            await settles_to(_running(h.axon), WORKERS)  # the floods hold every slot
            await settles_to(_running(h.axon), 0)  # cut at the deadline
            result = await h.call(Dummy(input=2), timeout=10.0)
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
            await settles_to(_running(b.axon), WORKERS)
            await settles_to(_running(b.axon), 0)  # cut at the deadline
            response = await b.client.call(Dummy(input=2), timeout=10.0)
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


def _stalled_h2_call(port: int, raw: RawCaller, body: bytes) -> socket.socket:
    """Open one HTTP/2 connection, send a signed Flood call on it and never read a byte:
    no SETTINGS ack, no WINDOW_UPDATE, a small receive buffer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/axon.v1.Axon/Flood"),
        (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *raw.metadata(body, method="Flood", timeout=str(ENVOY_DEADLINE_S)),
    ]
    connection.send_headers(1, headers)
    connection.send_data(1, b"\x00" + len(body).to_bytes(4, "big") + body, end_stream=True)
    sock.sendall(connection.data_to_send())
    return sock


def _gauges(port: int) -> tuple[float, float, float]:
    """(workers busy, Flood streams open, Flood streams cut at the deadline) of one scrape."""
    samples, _ = scrape(port)
    return (
        value(samples, "axon_workers_busy"),
        value(samples, "axon_streams_open", synapse="Flood"),
        value(samples, "axon_refusals_total", synapse="Flood", transport="grpc", reason="deadline"),
    )


@requires_pyvoy
async def test_envoy_streams_nobody_reads_free_their_slots_at_the_deadline() -> None:
    process, port = serve()
    raw = RawCaller(f"127.0.0.1:{port}", AXON_HOTKEY)
    body = schema_for(Flood).to_bytes({"seed": 1})
    sockets = [_stalled_h2_call(port, raw, body) for _ in range(WORKERS)]
    try:

        async def gauges() -> tuple[float, float, float]:
            return await asyncio.to_thread(_gauges, port)

        await settles_to(gauges, (WORKERS, WORKERS, 0))  # the floods hold their slots
        await settles_to(gauges, (0, 0, WORKERS))  # cut at the deadline, still unread
        async with Dendrite() as dendrite:
            result = await dendrite.call(_info(port), Dummy(input=2), timeout=5, deserialize=False)
        assert (result.dendrite.status_code, result.output) == (200, 4)
    finally:
        for sock in sockets:
            sock.close()
        await raw.close()
        stop(process)
