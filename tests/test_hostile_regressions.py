"""Regression tests for issue 13's items done before this file: 13.7 (admission under a
deadline/release race), 13.10 (statuses survive their messages on gRPC) and 13.11 (no
internals echoed, the 404 name capped) on both transports."""

from __future__ import annotations

import asyncio
import random
import time

import grpc

from axon_grpc import Synapse
from axon_grpc.errors import RequestTimeout, ServiceUnavailable
from axon_grpc.server.admission import AdmissionQueue
from axon_grpc.testing import serve_axon

from .support import Dummy, RawCaller, dummy_forward
from .test_bridge_client import serve_bridge

SLOTS, QUEUE = 2, 6


async def test_admission_count_is_exact_when_deadlines_meet_releases() -> None:
    """Waiters whose deadline falls on the instant a slot is handed over, many times over:
    never more than SLOTS run, a waiter that timed out never runs, nothing is left held."""
    queue = AdmissionQueue(SLOTS, QUEUE)
    inside = peak = 0
    rng = random.Random(13)

    async def job(priority: float, deadline: float | None, hold: float) -> str:
        nonlocal inside, peak
        try:
            await queue.acquire(priority, deadline)
        except (RequestTimeout, ServiceUnavailable):
            assert queue.waiting <= QUEUE
            return "refused"
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(hold)
        inside -= 1
        queue.release()
        return "ran"

    for _ in range(300):
        handover = time.monotonic() + 0.002
        jobs = [job(0.0, None, 0.002) for _ in range(SLOTS)]
        jobs += [job(rng.random(), handover + rng.choice((-2e-4, 0.0, 2e-4)), 0.0) for _ in range(QUEUE + 2)]
        outcomes = await asyncio.gather(*jobs)
        assert peak <= SLOTS
        assert outcomes[:SLOTS] == ["ran"] * SLOTS
        assert queue.running == 0 and queue.waiting == 0, (queue.running, queue.waiting)
    assert queue.stats.expired > 0  # the race was met


# -- 13.10: a status message with a newline or a non-ASCII character ----------------------------


def unlucky(synapse: Dummy) -> tuple[bool, str]:
    return synapse.input == 13, "1000 τ\nthen more"


async def test_grpc_status_survives_a_non_ascii_and_multiline_message() -> None:
    async with serve_axon({"forward_fn": dummy_forward, "blacklist_fn": unlucky}) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.info.hotkey)
        try:
            status, _, details, trailing = await raw.call("Dummy", b"\x08\x0d")
            assert status is grpc.StatusCode.PERMISSION_DENIED
            assert details == "Forbidden. Key is blacklisted: 1000 τ\nthen more."
            assert trailing["bt_header_axon_status_code"] == "403"
            assert (
                trailing["bt_header_axon_status_message"] == "Forbidden. Key is blacklisted: 1000 %CF%84%0Athen more."
            )
            assert trailing["bt_header_axon_signature"].startswith("0x")
        finally:
            await raw.close()


async def test_http_status_survives_a_non_ascii_and_multiline_message() -> None:
    async with serve_bridge({"forward_fn": dummy_forward, "blacklist_fn": unlucky}) as b:
        response = await b.client.call(Dummy(input=13))
        assert response.status == 403
        assert response.message == "Forbidden. Key is blacklisted: 1000 τ\nthen more."
        assert b.verifies(response)


# -- 13.11: nothing of the miner's internals, nothing echoed -------------------------------------


class Guarded(Synapse):
    input: int = 0


def guarded_forward(synapse: Guarded) -> Guarded:
    return synapse


def leaky_verify(synapse: Guarded) -> None:
    raise RuntimeError("verify-secret-detail: db=postgres://user:pw@db")


async def test_verify_fn_text_is_never_sent_on_either_transport() -> None:
    async with serve_bridge({"forward_fn": guarded_forward, "verify_fn": leaky_verify}) as b:
        response = await b.client.call(Guarded(input=1))
        assert response.status == 401 and "secret" not in response.text
        assert response.message.startswith("Not Verified #")
        raw = RawCaller(f"127.0.0.1:{b.axon.port}", b.hotkey)
        try:
            status, _, details, trailing = await raw.call(
                "Guarded", b"\x08\x01", raw.metadata(b"\x08\x01", method="Guarded")
            )
            assert status is grpc.StatusCode.UNAUTHENTICATED and details.startswith("Not Verified #")
            assert "secret" not in details and not any("secret" in v for v in trailing.values())
        finally:
            await raw.close()


async def test_the_404_name_is_capped_on_either_transport() -> None:
    name = "N" * 3000
    async with serve_bridge(dummy_forward) as b:
        response = await b.client.send(f"/{name}", {}, None)
        assert response.status == 404 and len(response.text) < 600, len(response.text)
        raw = RawCaller(f"127.0.0.1:{b.axon.port}", b.hotkey)
        try:
            status, _, details, _ = await raw.call(name, b"")
            assert status is grpc.StatusCode.UNIMPLEMENTED and len(details) < 300, len(details)
        finally:
            await raw.close()
