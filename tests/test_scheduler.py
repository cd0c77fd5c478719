"""Tests for :mod:`axon_grpc.scheduler` (real threads; order is controlled with Events)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, wait

import pytest

from axon_grpc.scheduler import DeadlineExpired, PriorityThreadPoolExecutor, QueueFull

TIMEOUT = 5.0  # generous upper bound for any single wait; never asserted on


class Harness:
    """Makes pools and gates, and releases/shuts down everything at teardown."""

    def __init__(self) -> None:
        self.pools: list[PriorityThreadPoolExecutor] = []
        self.gates: list[threading.Event] = []

    def pool(self, max_workers: int = 1, **kwargs: object) -> PriorityThreadPoolExecutor:
        pool = PriorityThreadPoolExecutor(max_workers, **kwargs)  # type: ignore[arg-type]
        self.pools.append(pool)
        return pool

    def gate(self) -> threading.Event:
        event = threading.Event()
        self.gates.append(event)
        return event

    def block(self, pool: PriorityThreadPoolExecutor) -> tuple[threading.Event, Future[None]]:
        """Occupy one worker until the returned gate is set; returns once it is running."""
        gate, started = self.gate(), threading.Event()

        def hold() -> None:
            started.set()
            assert gate.wait(TIMEOUT)

        future = pool.submit(hold, priority=float("inf"))
        assert started.wait(TIMEOUT)
        return gate, future

    def close(self) -> None:
        for gate in self.gates:
            gate.set()
        for pool in self.pools:
            pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.close()


def appender(out: list[str], label: str) -> Callable[[], str]:
    def task() -> str:
        out.append(label)
        return label

    return task


# ---------------------------------------------------------------------- ordering


def test_saturated_pool_runs_highest_priority_first_fifo_on_ties(h: Harness) -> None:
    pool = h.pool(1)
    gate, blocker = h.block(pool)
    order: list[str] = []
    labels = [("p1", 1), ("p5a", 5), ("p3", 3), ("p5b", 5), ("p0", 0)]
    futures = [pool.submit(appender(order, label), priority=prio) for label, prio in labels]
    assert pool.queued == 5
    assert pool.active == 1

    gate.set()
    assert [f.result(TIMEOUT) for f in futures] == ["p1", "p5a", "p3", "p5b", "p0"]
    assert blocker.result(TIMEOUT) is None
    assert order == ["p5a", "p5b", "p3", "p1", "p0"]
    assert pool.queued == 0


def test_negative_and_infinite_priorities(h: Harness) -> None:
    pool = h.pool(1)
    gate, _ = h.block(pool)
    order: list[str] = []
    futures = [
        pool.submit(appender(order, "neg"), priority=-2.5),
        pool.submit(appender(order, "-inf"), priority=float("-inf")),
        pool.submit(appender(order, "zero")),
        pool.submit(appender(order, "inf"), priority=float("inf")),
    ]
    gate.set()
    wait(futures, timeout=TIMEOUT)
    assert order == ["inf", "zero", "neg", "-inf"]


def test_nan_or_non_numeric_priority_is_rejected(h: Harness) -> None:
    pool = h.pool(1)
    with pytest.raises(ValueError, match="NaN"):
        pool.submit(print, priority=float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        pool.submit(print, deadline=float("nan"))
    with pytest.raises(TypeError, match="priority"):
        pool.submit(print, priority="high")  # type: ignore[arg-type]
    assert pool.queued == 0


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        PriorityThreadPoolExecutor(0)
    with pytest.raises(ValueError):
        PriorityThreadPoolExecutor(2, max_queue=0)
    pool = PriorityThreadPoolExecutor()
    assert pool.max_workers == 10
    assert pool.max_queue is None
    pool.shutdown()


# ---------------------------------------------------------------------- deadlines


def test_deadline_passing_while_queued_fails_without_running(h: Harness) -> None:
    pool = h.pool(1)
    gate, _ = h.block(pool)
    ran: list[str] = []
    late = pool.submit(appender(ran, "late"), deadline=time.monotonic() + 0.05)
    later = pool.submit(appender(ran, "kept"), deadline=time.monotonic() + 60)

    # The worker is still blocked: the reaper fails the task at its deadline.
    with pytest.raises(DeadlineExpired, match="deadline passed while queued"):
        late.result(TIMEOUT)
    assert isinstance(late.exception(), TimeoutError)
    assert pool.expired_count == 1
    assert pool.queued == 1

    gate.set()
    assert later.result(TIMEOUT) == "kept"
    assert ran == ["kept"]
    assert pool.expired_count == 1


def test_deadline_already_passed_at_submit_fails_immediately(h: Harness) -> None:
    pool = h.pool(2)
    ran: list[str] = []
    future = pool.submit(appender(ran, "x"), deadline=time.monotonic() - 1)
    assert future.done()
    assert isinstance(future.exception(), DeadlineExpired)
    assert pool.expired_count == 1
    assert ran == []


def test_worker_skips_expired_task_when_it_dequeues_it(h: Harness) -> None:
    """Expiry is also checked at dequeue time, not only by the reaper."""
    pool = h.pool(1)
    gate, _ = h.block(pool)
    ran: list[str] = []
    future = pool.submit(appender(ran, "x"), deadline=time.monotonic() + 60)
    after = pool.submit(appender(ran, "y"), priority=-1)
    # Pretend the deadline has passed without letting the reaper notice first.
    with pool._lock:
        for _, _, item in pool._run_heap:
            if item.deadline is not None:
                item.deadline = time.monotonic() - 1
    gate.set()
    assert after.result(TIMEOUT) == "y"
    assert isinstance(future.exception(TIMEOUT), DeadlineExpired)
    assert ran == ["y"]
    assert pool.expired_count == 1


# ---------------------------------------------------------------------- shedding


def test_max_queue_sheds_lowest_priority_or_refuses_new(h: Harness) -> None:
    pool = h.pool(1, max_queue=2)
    gate, _ = h.block(pool)
    ran: list[str] = []
    f1 = pool.submit(appender(ran, "p1"), priority=1)
    f2 = pool.submit(appender(ran, "p2"), priority=2)
    assert pool.shed_count == 0

    f3 = pool.submit(appender(ran, "p3"), priority=3)
    assert f1.done()
    with pytest.raises(QueueFull, match="server overloaded"):
        f1.result(0)
    assert isinstance(f1.exception(), RuntimeError)
    assert pool.shed_count == 1
    assert pool.queued == 2

    f0 = pool.submit(appender(ran, "p0"), priority=0)  # does not raise
    assert f0.done()
    assert isinstance(f0.exception(), QueueFull)
    assert pool.shed_count == 2

    f_tie = pool.submit(appender(ran, "p2-tie"), priority=2)  # equal is not strictly higher
    assert isinstance(f_tie.exception(0), QueueFull)
    assert pool.shed_count == 3

    gate.set()
    assert f3.result(TIMEOUT) == "p3"
    assert f2.result(TIMEOUT) == "p2"
    assert ran == ["p3", "p2"]


def test_shedding_picks_newest_of_the_lowest(h: Harness) -> None:
    pool = h.pool(1, max_queue=2)
    gate, _ = h.block(pool)
    ran: list[str] = []
    older = pool.submit(appender(ran, "older"), priority=1)
    newer = pool.submit(appender(ran, "newer"), priority=1)
    pool.submit(appender(ran, "high"), priority=9)
    assert isinstance(newer.exception(0), QueueFull)
    gate.set()
    assert older.result(TIMEOUT) == "older"
    assert ran == ["high", "older"]


def test_expired_tasks_free_queue_room_before_shedding(h: Harness) -> None:
    pool = h.pool(1, max_queue=1)
    gate, _ = h.block(pool)
    ran: list[str] = []
    stale = pool.submit(appender(ran, "stale"), priority=5, deadline=time.monotonic() + 60)
    with pool._lock:  # make it stale without letting the reaper see it first
        past = time.monotonic() - 1
        pool._deadline_heap[:] = [(past, seq, item) for _, seq, item in pool._deadline_heap]
        for _, _, item in pool._deadline_heap:
            item.deadline = past
    fresh = pool.submit(appender(ran, "fresh"), priority=0)
    assert isinstance(stale.exception(TIMEOUT), DeadlineExpired)
    assert not fresh.done()
    assert pool.shed_count == 0
    gate.set()
    assert fresh.result(TIMEOUT) == "fresh"


def test_workers_free_to_start_do_not_count_against_max_queue(h: Harness) -> None:
    """max_queue bounds the backlog: calls beyond those the workers can take at once."""
    pool = h.pool(3, max_queue=1)
    gate = h.gate()
    futures = [pool.submit(gate.wait, TIMEOUT) for _ in range(4)]  # 3 running + 1 waiting
    assert not any(f.done() for f in futures)
    assert pool.shed_count == 0
    refused = pool.submit(gate.wait, TIMEOUT)
    assert isinstance(refused.exception(0), QueueFull)
    assert pool.shed_count == 1
    gate.set()
    assert all(f.result(TIMEOUT) for f in futures)


def test_heaps_stay_compact_under_churn(h: Harness) -> None:
    pool = h.pool(2, max_queue=4)
    futures = [
        pool.submit(int, str(i), priority=i % 7, deadline=time.monotonic() + 60) for i in range(2000)
    ]
    wait(futures, timeout=TIMEOUT)
    ok = [f.result() for f in futures if f.exception() is None]
    assert ok and all(isinstance(v, int) for v in ok)
    assert pool.queued == 0
    limit = 2 * pool.queued + 64
    assert len(pool._shed_heap) <= limit
    assert len(pool._deadline_heap) <= limit
    assert len(pool._run_heap) <= limit


# ---------------------------------------------------------------------- cancellation, errors


def test_cancel_while_queued_is_skipped_and_leaves_queue(h: Harness) -> None:
    pool = h.pool(1)
    gate, _ = h.block(pool)
    ran: list[str] = []
    doomed = pool.submit(appender(ran, "doomed"), priority=9)
    kept = pool.submit(appender(ran, "kept"))
    assert doomed.cancel()
    assert pool.queued == 1

    # wait() must see the cancellation (set_running_or_notify_cancel notified it).
    done, not_done = wait([doomed], timeout=TIMEOUT)
    assert done == {doomed} and not not_done

    gate.set()
    assert kept.result(TIMEOUT) == "kept"
    assert ran == ["kept"]
    with pytest.raises(CancelledError):
        doomed.result(0)


def test_running_task_cannot_be_cancelled(h: Harness) -> None:
    pool = h.pool(1)
    gate, blocker = h.block(pool)
    assert blocker.running()
    assert not blocker.cancel()
    gate.set()
    assert blocker.result(TIMEOUT) is None


def test_exception_goes_to_future_and_worker_survives(h: Harness) -> None:
    pool = h.pool(1, thread_name_prefix="t")

    def boom() -> None:
        raise ValueError("bad input")

    failed = pool.submit(boom)
    with pytest.raises(ValueError, match="bad input"):
        failed.result(TIMEOUT)
    names = pool.submit(lambda: threading.current_thread().name)
    assert names.result(TIMEOUT) == "t-0"
    assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(TIMEOUT) == 5


def test_base_exception_is_captured_too(h: Harness) -> None:
    pool = h.pool(1)

    def leave() -> None:
        raise SystemExit(3)

    assert isinstance(pool.submit(leave).exception(TIMEOUT), SystemExit)
    assert pool.submit(lambda: 1).result(TIMEOUT) == 1


def test_callback_may_resubmit_without_deadlock(h: Harness) -> None:
    pool = h.pool(1, max_queue=1)
    gate, _ = h.block(pool)
    second: list[Future[int]] = []
    first = pool.submit(lambda: 1)
    first.add_done_callback(lambda f: second.append(pool.submit(lambda: 2)))
    pool.submit(lambda: 3, priority=5)  # displaces `first`, whose callback resubmits
    assert isinstance(first.exception(0), QueueFull)
    # The callback ran outside the pool's lock; its submit met a full queue (the
    # priority-5 call) and was refused rather than deadlocking.
    assert len(second) == 1
    assert isinstance(second[0].exception(0), QueueFull)
    assert pool.shed_count == 2
    gate.set()


# ---------------------------------------------------------------------- threads


def test_threads_are_lazy_daemon_and_named(h: Harness) -> None:
    pool = h.pool(4, thread_name_prefix="axon-test")
    assert pool._threads == []
    assert pool.submit(lambda: threading.current_thread().name).result(TIMEOUT) == "axon-test-0"
    assert len(pool._threads) == 1
    assert all(t.daemon for t in pool._threads)
    default = h.pool(1)
    assert default.submit(lambda: threading.current_thread().name).result(TIMEOUT) == "axon-worker-0"


def test_four_workers_run_concurrently(h: Harness) -> None:
    pool = h.pool(4)
    barrier = threading.Barrier(5)
    gate = h.gate()

    def hold(i: int) -> int:
        barrier.wait(TIMEOUT)
        assert gate.wait(TIMEOUT)
        return i

    futures = [pool.submit(hold, i) for i in range(4)]
    barrier.wait(TIMEOUT)
    assert pool.active == 4
    assert len(pool._threads) == 4
    gate.set()
    assert [f.result(TIMEOUT) for f in futures] == [0, 1, 2, 3]
    wait(futures)
    deadline = time.monotonic() + TIMEOUT
    while pool.active and time.monotonic() < deadline:
        time.sleep(0.001)
    assert pool.active == 0


def test_never_more_than_max_workers_threads(h: Harness) -> None:
    pool = h.pool(2)
    gate = h.gate()
    futures = [pool.submit(gate.wait, TIMEOUT) for _ in range(6)]
    assert len(pool._threads) == 2
    gate.set()
    assert all(f.result(TIMEOUT) for f in futures)


def test_map_uses_default_priority(h: Harness) -> None:
    pool = h.pool(3)
    assert list(pool.map(lambda x: x * x, range(6))) == [0, 1, 4, 9, 16, 25]


# ---------------------------------------------------------------------- asyncio


async def test_run_in_executor(h: Harness) -> None:
    pool = h.pool(2)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(pool, pow, 2, 10) == 1024


async def test_run_coroutine_returns_and_raises(h: Harness) -> None:
    pool = h.pool(2)
    assert await pool.run(lambda a, b: a - b, 7, 2, priority=3.0) == 5

    def boom() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        await pool.run(boom)


async def test_run_respects_priority_and_deadline(h: Harness) -> None:
    pool = h.pool(1)
    gate, _ = h.block(pool)
    order: list[str] = []
    low = asyncio.ensure_future(pool.run(appender(order, "low"), priority=1))
    high = asyncio.ensure_future(pool.run(appender(order, "high"), priority=2))
    expiring = asyncio.ensure_future(
        pool.run(appender(order, "late"), deadline=time.monotonic() + 0.02)
    )
    with pytest.raises(DeadlineExpired):
        await expiring
    gate.set()
    assert await asyncio.gather(low, high) == ["low", "high"]
    assert order == ["high", "low"]


async def test_cancelling_awaiter_removes_queued_task(h: Harness) -> None:
    pool = h.pool(1)
    gate, _ = h.block(pool)
    ran: list[str] = []
    task = asyncio.ensure_future(pool.run(appender(ran, "x")))
    await asyncio.sleep(0)
    assert pool.queued == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.queued == 0
    gate.set()
    assert await pool.run(appender(ran, "y")) == "y"
    assert ran == ["y"]


# ---------------------------------------------------------------------- shutdown


def test_shutdown_cancel_futures_cancels_queued_and_refuses_new(h: Harness) -> None:
    pool = h.pool(1)
    gate, blocker = h.block(pool)
    ran: list[str] = []
    queued = [pool.submit(appender(ran, str(i)), priority=i) for i in range(3)]
    pool.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    done, _ = wait(queued, timeout=TIMEOUT)
    assert done == set(queued)
    assert pool.queued == 0
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        pool.submit(print)

    gate.set()
    pool.shutdown(wait=True)
    assert blocker.result(0) is None
    assert ran == []
    assert not any(t.is_alive() for t in pool._threads)


def test_shutdown_without_cancel_drains_queue(h: Harness) -> None:
    pool = h.pool(1)
    gate, _ = h.block(pool)
    order: list[str] = []
    futures = [pool.submit(appender(order, str(p)), priority=p) for p in (1, 3, 2)]
    releaser = threading.Thread(target=gate.set)
    releaser.start()
    pool.shutdown(wait=True)
    releaser.join()
    assert all(f.done() for f in futures)
    assert order == ["3", "2", "1"]
    assert not any(t.is_alive() for t in pool._threads)


def test_context_manager_and_repeated_shutdown(h: Harness) -> None:
    with PriorityThreadPoolExecutor(2) as pool:
        future = pool.submit(lambda: "ok", deadline=time.monotonic() + 60)
    assert future.result(0) == "ok"
    pool.shutdown()
    pool.shutdown(wait=False, cancel_futures=True)
    reaper = pool._reaper
    assert reaper is not None
    reaper.join(TIMEOUT)
    assert not reaper.is_alive()


def test_shutdown_from_inside_a_task_does_not_deadlock(h: Harness) -> None:
    pool = h.pool(1)
    holder: dict[str, PriorityThreadPoolExecutor] = {"pool": pool}
    assert pool.submit(lambda: holder["pool"].shutdown(wait=True)).result(TIMEOUT) is None
