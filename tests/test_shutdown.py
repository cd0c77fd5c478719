"""Issue 13.12: stopping drains both protocols at once and ends within the grace.

From the moment ``stop_async`` starts, health says NOT_SERVING and neither port takes
new work; calls that finish within the grace are answered as usual; what is still
running at the grace is answered 503 / UNAVAILABLE ``Service unavailable: shutting
down`` (the documented shape, not uvicorn's plain-text 500); the stop returns right after.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from axon_grpc import Synapse
from axon_grpc.schema import schema_for

from .support import RawCaller
from .test_bridge_client import serve_bridge

GRACE = 1.0
SLACK = 2.0  #: what a stop may take past its grace (a loaded machine; the grace it must not wait out is 5 s)


class Nap(Synapse):
    seconds: float = 0.0


async def nap_forward(synapse: Nap) -> Nap:
    await asyncio.sleep(synapse.seconds)
    return synapse


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


async def test_stop_drains_both_protocols_within_the_grace(caplog) -> None:
    caplog.set_level(logging.INFO)
    async with serve_bridge(nap_forward) as b:
        axon = b.axon
        raw = RawCaller(f"127.0.0.1:{axon.port}", b.hotkey)
        health = health_pb2_grpc.HealthStub(raw.channel)

        def grpc_nap(seconds: float):
            body = schema_for(Nap).to_bytes({"seconds": seconds})
            return raw.call("Nap", body, raw.metadata(body, method="Nap"), timeout=10)

        async def http_nap(seconds: float):
            return await b.client.call(Nap(seconds=seconds))

        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        quick = [asyncio.ensure_future(grpc_nap(0.3)), asyncio.ensure_future(http_nap(0.3))]
        stuck = [asyncio.ensure_future(grpc_nap(5.0)), asyncio.ensure_future(http_nap(5.0))]
        await asyncio.sleep(0.2)  # all four are running
        started = time.monotonic()
        stopping = asyncio.ensure_future(axon.stop_async(grace=GRACE))
        await asyncio.sleep(0.05)
        try:
            # At once: NOT_SERVING (to those watching: a new health check is refused with the
            # rest), and neither port takes new work.
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            body = schema_for(Nap).to_bytes({"seconds": 0.0})
            status, _, details, _ = await raw.call("Nap", body, raw.metadata(body, method="Nap"), timeout=2)
            assert status is grpc.StatusCode.UNAVAILABLE, (status, details)
            assert _refuses_connections(b.client.http_port)

            # Within the grace: the quick ones as usual.
            grpc_quick, http_quick = await asyncio.gather(*quick)
            assert grpc_quick[0] is grpc.StatusCode.OK
            assert http_quick.status == 200

            # At the grace: the stuck ones answered 503, in the documented shape.
            (status, _, details, trailing), http_stuck = await asyncio.gather(*stuck)
            assert status is grpc.StatusCode.UNAVAILABLE and details == "Service unavailable: shutting down"
            assert trailing["bt_header_axon_status_code"] == "503"
            assert http_stuck.status == 503
            assert http_stuck.headers["content-type"] == "application/json"
            assert http_stuck.message == "Service unavailable: shutting down"
            assert http_stuck.headers["bt_header_axon_status_code"] == "503"

            await stopping
            took = time.monotonic() - started
            assert GRACE - 0.1 <= took <= GRACE + SLACK, took
        finally:
            await asyncio.gather(stopping, *quick, *stuck, return_exceptions=True)
            await raw.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def test_stop_without_work_in_flight_is_prompt() -> None:
    async with serve_bridge(nap_forward) as b:
        started = time.monotonic()
        await b.axon.stop_async(grace=5.0)
        assert time.monotonic() - started < SLACK
        assert _refuses_connections(b.client.http_port) and _refuses_connections(b.axon.port)


assert aiohttp  # the legacy client's library
