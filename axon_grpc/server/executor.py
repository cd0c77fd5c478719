"""``axon.thread_pool``: the threads that run synchronous forwards.

Order, bounds, shedding and deadlines all live in the admission queue
(:mod:`axon_grpc.server.admission`): a forward reaches the pool only once it holds one of
``max_workers`` slots, so the pool never has to queue or order anything itself. It
keeps the seed's ``submit(fn, *args, priority=...)`` signature for code written
against the SDK's ``PriorityThreadPoolExecutor``.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

__all__ = ["ForwardPool"]

T = TypeVar("T")


class ForwardPool(ThreadPoolExecutor):
    """A thread pool of ``max_workers`` threads that counts the calls running on it."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="axon-forward")
        self.max_workers = max_workers
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        """Calls running on a thread right now."""
        return self._active

    def submit(  # type: ignore[override]
        self, fn: Callable[..., T], /, *args: Any, priority: float = 0.0, **kwargs: Any
    ) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a thread. ``priority`` is accepted for the SDK's
        signature; the admission queue has already ordered the work."""
        return super().submit(self._counted, fn, args, kwargs)

    def _counted(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        with self._lock:
            self._active += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._active -= 1
