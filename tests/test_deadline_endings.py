"""Issue 25: calls the caller's deadline ends are counted, timed and logged like any other.

An axon whose forward outlives the caller's patience: each call ends at the caller's
deadline, and ``/metrics`` afterwards counts exactly those calls, 408 with the ``deadline``
reason, each timed; each has its one log line. (The Envoy edge's test is in
``tests/edge/test_serve_axon.py``.)
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from axon_grpc.schema import schema_for
from axon_grpc.testing import serve_axon

from .support import RawCaller, Sleepy, sleepy_forward
from .test_bridge_client import serve_bridge
from .test_metrics import scrape, value

CALLS = 5
#: What the caller waits; the forward takes four times as long.
PATIENCE_S = 0.5


async def _idle(axon, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if axon.admission.running == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # the last report follows the slot's release


def counted(samples: dict, transport: str) -> tuple[float, float, float]:
    """(requests 4xx, refusals for the deadline, calls timed) of Sleepy over ``transport``."""
    return (
        value(
            samples, "axon_requests_total", synapse="Sleepy", transport=transport, scheme="legacy", status_class="4xx"
        ),
        value(samples, "axon_refusals_total", synapse="Sleepy", transport=transport, reason="deadline"),
        value(samples, "axon_request_duration_seconds_count", synapse="Sleepy", transport=transport),
    )


async def calls_past_the_deadline(address: str, axon_hotkey: str) -> None:
    """:data:`CALLS` gRPC calls of a forward that takes four times the caller's deadline."""
    raw = RawCaller(address, axon_hotkey)
    try:
        for _ in range(CALLS):
            body = schema_for(Sleepy).to_bytes({"seconds": 4 * PATIENCE_S})
            code, *_ = await raw.call("Sleepy", body, raw.metadata(body, method="Sleepy"), timeout=PATIENCE_S)
            assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await raw.close()


def _call_lines(caplog, transport: str) -> list[int]:
    return [
        r.status  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "synapse", None) == "Sleepy" and getattr(r, "transport", None) == transport
    ]


async def test_grpc_calls_ended_by_the_callers_deadline_arecounted(caplog) -> None:
    """grpc.aio cancels the handler at the gRPC deadline (the signed timeout is longer)."""
    caplog.set_level(logging.DEBUG, logger="axon_grpc")
    async with serve_axon(sleepy_forward, http_port=0) as h:
        await calls_past_the_deadline(f"127.0.0.1:{h.axon.port}", h.info.hotkey)
        await _idle(h.axon)
        samples, _ = await asyncio.to_thread(scrape, h.axon.http_port)
    assert counted(samples, "grpc") == (CALLS, CALLS, CALLS)
    assert _call_lines(caplog, "grpc") == [408] * CALLS


async def test_bridge_calls_ended_by_the_callers_deadline_arecounted(caplog) -> None:
    """A legacy dendrite's deadline is the signed timeout: the bridge ends the call there."""
    caplog.set_level(logging.DEBUG, logger="axon_grpc")
    async with serve_bridge(sleepy_forward) as b:
        for _ in range(CALLS):
            response = await b.client.call(Sleepy(seconds=4 * PATIENCE_S), timeout=PATIENCE_S)
            assert response.status == 408
        await _idle(b.axon)
        samples, _ = await asyncio.to_thread(scrape, b.client.http_port)
    assert counted(samples, "http") == (CALLS, CALLS, CALLS)
    assert _call_lines(caplog, "http") == [408] * CALLS
