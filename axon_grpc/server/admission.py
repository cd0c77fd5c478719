"""Admission: a bounded, priority-ordered queue in front of the forward slots.

Every forward, sync or async, needs one of ``slots`` running slots. When all are
taken, requests wait in a queue ordered by ``priority_fn`` (highest first, then
arrival). The queue is bounded: when it is full, the lowest-priority request (the
newcomer, unless a queued one ranks strictly lower) is refused at once with 503, so
high-priority callers keep their latency under overload. A request whose deadline
passes while it waits is dropped without running (408).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass, field

from axon_grpc.errors import RequestTimeout, Shed

OVERLOADED = "Service unavailable: server overloaded"


@dataclass(order=True)
class _Waiter:
    sort_key: tuple[float, int]
    future: asyncio.Future[None] = field(compare=False)
    priority: float = field(compare=False)
    active: bool = field(default=True, compare=False)


@dataclass
class AdmissionStats:
    """Counters since the axon was created."""

    admitted: int = 0  #: requests that got a slot
    shed: int = 0  #: refused with 503 because the queue was full
    expired: int = 0  #: deadline passed while queued; never ran
    late: int = 0  #: sync forwards that finished after their caller's deadline (result discarded)


class AdmissionQueue:
    """``slots`` concurrent forwards; at most ``max_queue`` waiting, best priority first.

    Bound to the event loop it is first used on; not thread-safe (loop only).
    """

    def __init__(self, slots: int, max_queue: int) -> None:
        if slots < 1 or max_queue < 0:
            raise ValueError("slots must be >= 1 and max_queue >= 0")
        self.slots = slots
        self.max_queue = max_queue
        self.running = 0
        self.stats = AdmissionStats()
        self._heap: list[_Waiter] = []
        self._waiting = 0
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        """Requests queued for a slot."""
        return self._waiting

    @property
    def saturated(self) -> bool:
        """Every slot busy and the queue full: a newcomer is admitted only by displacing."""
        return self.running >= self.slots and self._waiting >= self.max_queue

    def would_admit(self, priority: float) -> bool:
        """Whether a request of ``priority`` would get a slot or a place in the queue now."""
        if not self.saturated:
            return True
        lowest = self._lowest()
        return lowest is not None and priority > lowest.priority

    async def acquire(self, priority: float, deadline: float | None) -> None:
        """Wait for a slot; raises Shed (503) or RequestTimeout (expired)."""
        if self.running < self.slots and self._waiting == 0:
            self.running += 1
            self.stats.admitted += 1
            return
        if self._waiting >= self.max_queue:
            self._shed_for(priority)
        waiter = _Waiter((-priority, next(self._seq)), asyncio.get_running_loop().create_future(), priority)
        heapq.heappush(self._heap, waiter)
        self._waiting += 1
        timeout = None if deadline is None else deadline - time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            self._give_up(waiter)
            self.stats.expired += 1
            raise RequestTimeout("Request expired while queued") from None
        except asyncio.CancelledError:
            self._give_up(waiter)
            raise
        error = waiter.future.exception()
        if error is not None:
            raise error
        self.stats.admitted += 1

    def release(self) -> None:
        """Give a finished forward's slot to the best waiter, or free it."""
        while self._heap:
            waiter = heapq.heappop(self._heap)
            if waiter.active:
                waiter.active = False
                self._waiting -= 1
                waiter.future.set_result(None)
                return
        self.running -= 1

    def _give_up(self, waiter: _Waiter) -> None:
        """A waiter leaves: out of the queue, or, if its slot arrived meanwhile, the slot passed on.

        Either way it does not run: a request whose deadline passed just as it was
        handed a slot must neither run nor keep the slot.
        """
        if waiter.active:
            waiter.active = False
            self._waiting -= 1
        elif waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
            self.release()

    def _lowest(self) -> _Waiter | None:
        """The queued request that would be shed first: lowest priority, newest."""
        victim: _Waiter | None = None
        for waiter in self._heap:
            if waiter.active and (victim is None or waiter.sort_key > victim.sort_key):
                victim = waiter
        return victim

    def _shed_for(self, priority: float) -> None:
        """Make room for a newcomer of ``priority`` or refuse it."""
        victim = self._lowest()
        self.stats.shed += 1
        if victim is None or not priority > victim.priority:
            raise Shed(OVERLOADED)
        victim.active = False
        self._waiting -= 1
        victim.future.set_exception(Shed(OVERLOADED))
