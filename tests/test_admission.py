"""Admission: priority order under saturation, shedding, deadlines, late results, bad priorities."""

from __future__ import annotations

import asyncio
import base64
import threading

import grpc
import pytest

from axon_grpc import Synapse
from axon_grpc.errors import RequestTimeout, ServiceUnavailable
from axon_grpc.schema import schema_for
from axon_grpc.server.admission import OVERLOADED, AdmissionQueue
from axon_grpc.testing import serve_axon

from .support import Dummy, RawCaller, dummy_forward


# -- the queue itself ---------------------------------------------------------------------
async def test_queue_hands_slots_out_by_priority_then_arrival() -> None:
    queue = AdmissionQueue(slots=1, max_queue=10)
    await queue.acquire(0, None)
    order: list[str] = []

    async def waiter(label: str, priority: float) -> None:
        await queue.acquire(priority, None)
        order.append(label)
        queue.release()

    tasks = []
    for label, priority in [("a", 1), ("b", 5), ("c", 3), ("d", 5)]:
        tasks.append(asyncio.create_task(waiter(label, priority)))
        await asyncio.sleep(0)
    assert queue.waiting == 4
    queue.release()
    await asyncio.gather(*tasks)
    assert order == ["b", "d", "c", "a"]
    assert queue.running == 0 and queue.waiting == 0


async def test_full_queue_sheds_the_lowest_priority() -> None:
    queue = AdmissionQueue(slots=1, max_queue=2)
    await queue.acquire(0, None)
    low = asyncio.create_task(queue.acquire(1, None))
    mid = asyncio.create_task(queue.acquire(2, None))
    await asyncio.sleep(0)
    high = asyncio.create_task(queue.acquire(3, None))  # displaces the priority-1 request
    await asyncio.sleep(0)
    with pytest.raises(ServiceUnavailable, match=OVERLOADED):
        await low
    with pytest.raises(ServiceUnavailable):
        await queue.acquire(0, None)  # ranks lowest: refused itself
    assert queue.stats.shed == 2 and queue.waiting == 2
    queue.release()
    await high
    queue.release()
    await mid
    queue.release()
    assert queue.running == 0


async def test_queued_request_expires_at_its_deadline() -> None:
    queue = AdmissionQueue(slots=1, max_queue=4)
    await queue.acquire(0, None)
    loop = asyncio.get_running_loop()
    with pytest.raises(RequestTimeout):
        await queue.acquire(9, loop.time() + 0.05)
    assert queue.stats.expired == 1 and queue.waiting == 0
    queue.release()
    assert queue.running == 0


# -- over gRPC ---------------------------------------------------------------------------------
gate = threading.Event()
ran: list[int] = []


class Work(Synapse):
    rank: int = 0
    seconds: float = 0.0


def work_forward(synapse: Work) -> Work:
    if synapse.rank < 0:
        gate.wait(10)
    else:
        ran.append(synapse.rank)
    return synapse


def work_priority(synapse: Work) -> float:
    return float(synapse.rank)


def request(raw: RawCaller, rank: int, timeout: str = "12.0"):
    body = schema_for(Work).to_bytes({"rank": rank})
    header = base64.b64encode(str(rank).encode()).decode()
    return raw.call("Work", body, raw.metadata(body, method="Work", bt_header_input_obj_rank=header, timeout=timeout))


async def wait_until(predicate, limit: float = 5.0) -> None:
    for _ in range(int(limit / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
async def saturated():
    gate.clear()
    ran.clear()
    async with serve_axon({"forward_fn": work_forward, "priority_fn": work_priority}, max_workers=1, max_queue=2) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.axon.wallet.hotkey.ss58_address)
        blocker = asyncio.create_task(request(raw, -1))
        await wait_until(lambda: h.axon.thread_pool.active == 1)
        yield h, raw, blocker
        gate.set()
        await blocker
        await raw.close()


async def test_full_queue_refuses_low_priority_with_503(saturated) -> None:
    h, raw, blocker = saturated
    low = asyncio.create_task(request(raw, 1))
    await wait_until(lambda: h.axon.admission.waiting == 1)
    mid = asyncio.create_task(request(raw, 2))
    await wait_until(lambda: h.axon.admission.waiting == 2)
    high = asyncio.create_task(request(raw, 3))
    shed = await low
    assert shed[0] == grpc.StatusCode.UNAVAILABLE
    assert shed[2] == OVERLOADED and shed[3]["bt_header_axon_status_code"] == "503"
    assert "bt_header_axon_signature" not in shed[3]  # overload refusals are not signed
    lowest = await request(raw, 0)
    assert lowest[0] == grpc.StatusCode.UNAVAILABLE
    gate.set()
    results = await asyncio.gather(blocker, mid, high)
    assert [r[0] for r in results] == [grpc.StatusCode.OK] * 3
    assert ran == [3, 2]  # the shed ones never ran
    assert h.axon.admission.stats.shed == 2


async def test_request_queued_past_its_deadline_never_runs(saturated) -> None:
    h, raw, blocker = saturated
    status, _, details, trailing = await request(raw, 7, timeout="0.3")
    assert status == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details == "Response timeout after: 0.3s" and trailing["bt_header_axon_status_code"] == "408"
    gate.set()
    await blocker
    await wait_until(lambda: h.axon.admission.stats.expired == 1, 20.0)  # dropped as its turn came
    assert ran == []


class Sleepy(Synapse):
    seconds: float = 0.0


cancelled: list[bool] = []


async def sleepy_forward(synapse: Sleepy) -> Sleepy:
    try:
        await asyncio.sleep(synapse.seconds)
    except asyncio.CancelledError:
        cancelled.append(True)
        raise
    return synapse


release_late = threading.Event()


class Stubborn(Synapse):
    pass


def stubborn_forward(synapse: Stubborn) -> Stubborn:
    release_late.wait(5)
    return synapse


async def test_deadlines_cancel_async_forwards_and_discard_late_sync_results() -> None:
    cancelled.clear()
    release_late.clear()
    async with serve_axon(sleepy_forward, stubborn_forward) as h:
        slow = await h.call(Sleepy(seconds=5), timeout=0.3)
        assert slow.dendrite.status_code == 408
        await wait_until(lambda: cancelled == [True])  # the forward saw the cancellation

        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.axon.wallet.hotkey.ss58_address)
        status, _, details, _ = await raw.call("Stubborn", b"", raw.metadata(b"", method="Stubborn", timeout="0.2"))
        await raw.close()
        assert status == grpc.StatusCode.DEADLINE_EXCEEDED and details == "Response timeout after: 0.2s"
        assert h.axon.admission.running == 1  # the thread still holds its slot
        release_late.set()
        await wait_until(lambda: h.axon.admission.stats.late == 1)
        assert h.axon.admission.running == 0
        ok = await h.call(Sleepy(seconds=0))
        assert ok.dendrite.status_code == 200


def raising_priority(synapse: Dummy) -> float:
    raise RuntimeError("bad priority")


def wordy_priority(synapse: Dummy) -> float:
    return "high"  # type: ignore[return-value]


@pytest.mark.parametrize("priority", [raising_priority, wordy_priority])
async def test_broken_priority_function_is_a_500_and_the_axon_lives_on(priority) -> None:
    async with serve_axon({"forward_fn": dummy_forward, "priority_fn": priority}, sleepy_forward) as h:
        result = await h.call(Dummy(input=2))
        assert result.dendrite.status_code == 500
        assert result.dendrite.status_message.startswith("Internal Server Error #")
        again = await h.call(Sleepy(seconds=0))
        assert again.dendrite.status_code == 200


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
async def test_zero_negative_and_non_finite_timeouts_are_refused(timeout: str) -> None:
    async with serve_axon(dummy_forward) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.axon.wallet.hotkey.ss58_address)
        status, _, details, _ = await raw.call("Dummy", b"\x08\x01", raw.metadata(b"\x08\x01", timeout=timeout))
        ok = await raw.call("Dummy", b"\x08\x01")
        await raw.close()
    assert status == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "Improperly formatted request. timeout must be a positive number of seconds (rule R5)"
    assert ok[0] == grpc.StatusCode.OK


def test_queue_bound_defaults_to_eight_per_worker() -> None:
    from axon_grpc.testing import build_axon

    assert build_axon(max_workers=3).admission.max_queue == 24
    assert build_axon(max_workers=3, max_queue=5).admission.max_queue == 5


async def test_saturated_axon_refuses_hopeless_requests_before_verifying_them(saturated) -> None:
    """Under saturation only a caller whose last verified priority could displace someone is
    verified; no hook runs on unverified data to decide it."""
    h, raw, _blocker = saturated
    first = asyncio.create_task(request(raw, 5))
    second = asyncio.create_task(request(raw, 6))
    await wait_until(lambda: h.axon.admission.waiting == 2)
    assert h.axon.admission.saturated
    body = schema_for(Work).to_bytes({"rank": 9})
    stranger = RawCaller(raw.address, raw.axon_hotkey)  # never verified by this axon
    forged = stranger.metadata(body, bt_header_dendrite_signature="0x" + "ab" * 64)
    low = await stranger.call("Work", body, forged)
    await stranger.close()
    assert low[0] == grpc.StatusCode.UNAVAILABLE and low[2] == OVERLOADED  # no signature check spent
    claimed = raw.metadata(body, bt_header_dendrite_signature="0x" + "ab" * 64)
    high = await raw.call("Work", body, claimed)
    assert high[0] == grpc.StatusCode.UNAUTHENTICATED  # last verified at 6 > 5 queued: verified first
    assert h.axon.admission.waiting == 2  # and displaced no one
    gate.set()
    assert [r[0] for r in await asyncio.gather(first, second)] == [grpc.StatusCode.OK] * 2
