"""A priority-ordered thread pool for the axon's synchronous forwards.

:class:`PriorityThreadPoolExecutor` is a :class:`concurrent.futures.Executor` whose queue
is ordered by a float priority (higher runs sooner; equal priorities run in submission
order).  The order only matters while every worker is busy: with a free worker a task
starts at once.

On top of plain ordering it offers what an overloaded server needs:

* ``deadline`` -- an absolute :func:`time.monotonic` value.  A task still queued when it
  passes is never run; its future fails with :class:`DeadlineExpired`.  A small reaper
  thread fails such futures at their deadline, even while every worker is busy.
* ``max_queue`` -- a bound on the tasks waiting for a worker.  When it is reached a new
  task either displaces the lowest-priority waiting task (if its own priority is strictly
  higher) or is refused; the loser's future fails with :class:`QueueFull`.  ``submit``
  never raises for this.
* a future cancelled while queued leaves the queue at once and is never run.

The queue is a max-heap by ``(priority, submission order)``, with a min-heap by priority
for shedding and a min-heap by deadline for expiry.  Entries are deleted lazily (a task
leaving the queue is only flagged) and the heaps are rebuilt when stale entries outnumber
live ones, so every operation is O(log n) amortised.

Futures are always completed outside the pool's lock, so done-callbacks may call back into
the pool (``submit``, ``cancel``) freely.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, InvalidStateError
from typing import Any, TypeVar

__all__ = ["DeadlineExpired", "PriorityThreadPoolExecutor", "QueueFull"]

T = TypeVar("T")

#: Rebuild a heap once it holds more than ``2 * live + _COMPACT_SLACK`` entries.
_COMPACT_SLACK = 64


class DeadlineExpired(TimeoutError):
    """The task's deadline passed before a worker could start it."""

    def __init__(self, message: str = "deadline passed while queued") -> None:
        super().__init__(message)


class QueueFull(RuntimeError):
    """The queue was full and the task lost its place to a higher-priority one."""

    def __init__(self, message: str = "server overloaded") -> None:
        super().__init__(message)


class _WorkItem:
    """One submitted call.  ``queued`` is true exactly while it waits in the heaps."""

    __slots__ = ("args", "deadline", "fn", "future", "kwargs", "priority", "queued", "seq")

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: float,
        deadline: float | None,
        seq: int,
    ) -> None:
        self.future: Future[Any] | None = future
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs
        self.priority = priority
        self.deadline = deadline
        self.seq = seq
        self.queued = False

    def take(self) -> tuple[Future[Any] | None, Callable[..., Any] | None, tuple[Any, ...], dict[str, Any]]:
        """Hand the call over to its new owner and drop the item's references.

        The future's done-callback refers to this item, so clearing it breaks the
        future -> callback -> item -> future cycle that would keep results alive.
        """
        taken = (self.future, self.fn, self.args, self.kwargs)
        self.future, self.fn, self.args, self.kwargs = None, None, (), {}
        return taken


def _finite(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}") from None
    if math.isnan(number):
        raise ValueError(f"{name} must not be NaN")
    return number


def _fail(future: Future[Any] | None, exc: BaseException) -> None:
    """Fail a future we own unless it was cancelled (or completed by someone else)."""
    if future is None:
        return
    try:
        if future.set_running_or_notify_cancel():
            future.set_exception(exc)
    except (RuntimeError, InvalidStateError):  # completed behind our back: nothing to do
        pass


class PriorityThreadPoolExecutor(Executor):
    """A thread pool that runs the highest-priority queued call first.

    :param max_workers: upper bound on worker threads; they are started lazily.
    :param thread_name_prefix: worker threads are named ``f"{prefix}-{n}"`` (daemon).
    :param max_queue: bound on calls waiting for a worker (``None``: unbounded).
    """

    def __init__(
        self,
        max_workers: int = 10,
        *,
        thread_name_prefix: str = "axon-worker",
        max_queue: int | None = None,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError("max_workers must be a positive integer")
        if max_queue is not None and (
            isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1
        ):
            raise ValueError("max_queue must be a positive integer or None")
        self.max_workers: int = max_workers
        self.max_queue: int | None = max_queue
        self.thread_name_prefix: str = thread_name_prefix
        #: Tasks failed with :class:`QueueFull` (displaced or refused).
        self.shed_count: int = 0
        #: Tasks failed with :class:`DeadlineExpired`.
        self.expired_count: int = 0

        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._reaper_wake = threading.Condition(self._lock)
        # (-priority, seq, item): pop order.  (priority, -seq, item): shedding order, the
        # newest of the lowest first.  (deadline, seq, item): expiry order.
        self._run_heap: list[tuple[float, int, _WorkItem]] = []
        self._shed_heap: list[tuple[float, int, _WorkItem]] = []
        self._deadline_heap: list[tuple[float, int, _WorkItem]] = []
        self._seq = itertools.count()
        self._live = 0  # items with queued=True
        self._busy = 0  # workers holding an item
        self._threads: list[threading.Thread] = []
        self._reaper: threading.Thread | None = None
        self._shutdown = False

    # ------------------------------------------------------------------ introspection

    @property
    def queued(self) -> int:
        """Calls waiting in the queue."""
        return self._live

    @property
    def active(self) -> int:
        """Calls currently being run by a worker."""
        return self._busy

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} workers={len(self._threads)}/{self.max_workers} "
            f"active={self._busy} queued={self._live} shed={self.shed_count} "
            f"expired={self.expired_count}{' shutdown' if self._shutdown else ''}>"
        )

    # ------------------------------------------------------------------ public API

    def submit(  # type: ignore[override]
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        priority: float = 0.0,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; higher ``priority`` runs sooner.

        ``deadline`` is an absolute :func:`time.monotonic` value after which the call is
        no longer started.  Overload and expiry are reported through the returned future
        (:class:`QueueFull`, :class:`DeadlineExpired`), never raised here.

        :raises RuntimeError: after :meth:`shutdown`.
        :raises ValueError: ``priority`` or ``deadline`` is NaN.
        """
        prio = _finite("priority", priority)
        due = None if deadline is None else _finite("deadline", deadline)
        future: Future[T] = Future()
        item = _WorkItem(future, fn, args, kwargs, prio, due, 0)
        losers: list[tuple[_WorkItem, BaseException]] = []

        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            now = time.monotonic()
            if due is not None and due <= now:
                self.expired_count += 1
                losers.append((item, DeadlineExpired()))
            else:
                accept = True
                if self.max_queue is not None:
                    # Expired tasks must not take up room a live one could use.
                    losers.extend((old, DeadlineExpired()) for old in self._expire_locked(now))
                    if self._backlog_locked() >= self.max_queue:
                        self.shed_count += 1
                        victim = self._lowest_locked()
                        if victim is not None and prio > victim.priority:
                            self._remove_locked(victim)
                            losers.append((victim, QueueFull()))
                        else:
                            accept = False
                            losers.append((item, QueueFull()))
                if accept:
                    self._push_locked(item)

        for loser, exc in losers:
            _fail(loser.take()[0], exc)
        return future

    async def run(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        priority: float = 0.0,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Submit ``fn`` and await its result from asyncio.

        Cancelling the awaiting task cancels the call if it is still queued; a call that
        has started runs to completion.
        """
        future = self.submit(fn, *args, priority=priority, deadline=deadline, **kwargs)
        return await asyncio.wrap_future(future)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; optionally cancel queued ones; optionally wait for workers.

        Without ``cancel_futures`` the queued calls still run (or expire) before the
        workers exit.  Calling it again is harmless.
        """
        drained: list[_WorkItem] = []
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                drained = [entry[2] for entry in sorted(self._run_heap) if entry[2].queued]
                for item in drained:
                    item.queued = False
                self._live = 0
                self._run_heap.clear()
                self._shed_heap.clear()
                self._deadline_heap.clear()
            self._work_ready.notify_all()
            self._reaper_wake.notify_all()
            threads = list(self._threads)
            if self._reaper is not None:
                threads.append(self._reaper)

        for item in drained:
            future = item.take()[0]
            if future is not None and future.cancel():
                future.set_running_or_notify_cancel()  # False; wakes wait()/as_completed()
        if wait:
            me = threading.current_thread()
            for thread in threads:
                if thread is not me:
                    thread.join()

    # ------------------------------------------------------------------ queue (lock held)

    def _push_locked(self, item: _WorkItem) -> None:
        item.seq = next(self._seq)
        item.queued = True
        self._live += 1
        heapq.heappush(self._run_heap, (-item.priority, item.seq, item))
        if self.max_queue is not None:
            heapq.heappush(self._shed_heap, (item.priority, -item.seq, item))
        if item.deadline is not None:
            earliest = self._next_deadline_locked()
            heapq.heappush(self._deadline_heap, (item.deadline, item.seq, item))
            if self._reaper is None:
                self._reaper = self._start_thread(self._reap, f"{self.thread_name_prefix}-reaper")
            elif earliest is None or item.deadline < earliest:
                self._reaper_wake.notify()
        # The future is fresh (nobody else has seen it), so this cannot run the callback
        # right away -- which would deadlock, as the callback takes the lock.
        assert item.future is not None
        item.future.add_done_callback(self._forget_if_cancelled(item))

        self._work_ready.notify()
        if self._live > len(self._threads) - self._busy and len(self._threads) < self.max_workers:
            name = f"{self.thread_name_prefix}-{len(self._threads)}"
            self._threads.append(self._start_thread(self._work, name))

    def _remove_locked(self, item: _WorkItem) -> None:
        item.queued = False
        self._live -= 1
        self._maybe_compact_locked()

    def _backlog_locked(self) -> int:
        """Queued calls that no free worker is about to pick up."""
        free = len(self._threads) - self._busy
        return max(0, self._live - free)

    def _pop_locked(self, now: float, expired: list[_WorkItem]) -> _WorkItem | None:
        """Take the best runnable item; expired ones met on the way go to ``expired``."""
        heap = self._run_heap
        found: _WorkItem | None = None
        while heap:
            item = heapq.heappop(heap)[2]
            if not item.queued:
                continue
            item.queued = False
            self._live -= 1
            if item.deadline is not None and item.deadline <= now:
                self.expired_count += 1
                expired.append(item)
                continue
            self._busy += 1
            found = item
            break
        self._maybe_compact_locked()
        return found

    def _lowest_locked(self) -> _WorkItem | None:
        heap = self._shed_heap
        while heap and not heap[0][2].queued:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def _next_deadline_locked(self) -> float | None:
        heap = self._deadline_heap
        while heap and not heap[0][2].queued:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _expire_locked(self, now: float) -> list[_WorkItem]:
        expired: list[_WorkItem] = []
        heap = self._deadline_heap
        while heap and (not heap[0][2].queued or heap[0][0] <= now):
            item = heapq.heappop(heap)[2]
            if item.queued:
                item.queued = False
                self._live -= 1
                self.expired_count += 1
                expired.append(item)
        if expired:
            self._maybe_compact_locked()
        return expired

    def _maybe_compact_locked(self) -> None:
        """Drop stale entries once they outnumber the live ones (amortised O(1))."""
        limit = 2 * self._live + _COMPACT_SLACK
        for heap in (self._run_heap, self._shed_heap, self._deadline_heap):
            if len(heap) > limit:
                heap[:] = [entry for entry in heap if entry[2].queued]
                heapq.heapify(heap)

    # ------------------------------------------------------------------ threads

    def _start_thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def _forget_if_cancelled(self, item: _WorkItem) -> Callable[[Future[Any]], None]:
        """Done-callback: a future cancelled while queued leaves the queue at once."""

        def on_done(future: Future[Any]) -> None:
            if not future.cancelled():
                return
            with self._lock:
                if not item.queued:
                    return  # a worker, the reaper, shedding or shutdown owns it
                self._remove_locked(item)
            item.take()
            future.set_running_or_notify_cancel()  # False; wakes wait()/as_completed()

        return on_done

    def _work(self) -> None:
        while True:
            expired: list[_WorkItem] = []
            with self._lock:
                while True:
                    item = self._pop_locked(time.monotonic(), expired)
                    if item is not None or expired:
                        break
                    if self._shutdown:
                        # The queue is drained: let the reaper stop waiting on stale deadlines.
                        self._reaper_wake.notify_all()
                        return
                    self._work_ready.wait()
            for old in expired:
                _fail(old.take()[0], DeadlineExpired())
            if item is None:
                continue
            try:
                self._execute(item)
            finally:
                with self._lock:
                    self._busy -= 1

    @staticmethod
    def _execute(item: _WorkItem) -> None:
        future, fn, args, kwargs = item.take()
        if future is None or fn is None:
            return
        try:
            if not future.set_running_or_notify_cancel():
                return  # cancelled between leaving the queue and now
        except RuntimeError:  # completed behind our back
            return
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # the future reports it; the worker lives on
            try:
                future.set_exception(exc)
            except InvalidStateError:
                pass
        else:
            try:
                future.set_result(result)
            except InvalidStateError:
                pass
            del result

    def _reap(self) -> None:
        """Fail queued calls at their deadline, even while every worker is busy."""
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    expired = self._expire_locked(now)
                    if expired:
                        break
                    due = self._next_deadline_locked()
                    if due is None:
                        if self._shutdown:
                            return
                        self._reaper_wake.wait()
                    else:
                        self._reaper_wake.wait(due - now)
            for old in expired:
                _fail(old.take()[0], DeadlineExpired())
