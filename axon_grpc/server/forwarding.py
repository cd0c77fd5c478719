"""Running an admitted forward: a slot from the admission queue, then the miner's code.

Async forwards run on the loop, sync forwards on the thread pool (or on the loop when
attached with ``inline=True``), streaming forwards chunk by chunk; all under the same
admission slot and the call's time limit. A timer is armed only where the transport
does not already cancel the call at its deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any, AsyncGenerator, AsyncIterator, Awaitable, cast

from axon_grpc._aio import within
from axon_grpc.errors import InternalServerError, RequestTimeout
from axon_grpc.metrics.observer import NULL_OBSERVER, Observer
from axon_grpc.server.admission import AdmissionQueue
from axon_grpc.server.endpoints import Endpoint
from axon_grpc.streaming import open_stream
from axon_grpc.synapse import Synapse


def timed_out(synapse: Synapse) -> RequestTimeout:
    return RequestTimeout(f"Response timeout after: {synapse.timeout}s")


class Limit:
    """A call's time limit: the monotonic ``deadline`` and whether the pipeline must time it."""

    __slots__ = ("deadline", "timed")

    def __init__(self, deadline: float | None, timed: bool) -> None:
        self.deadline = deadline
        self.timed = timed

    def remaining(self) -> float | None:
        """Seconds left for a timer, or None when no timer is needed."""
        if not self.timed or self.deadline is None:
            return None
        return self.deadline - time.monotonic()


class Forwarder:
    """Runs forwards under admission; ``executor`` runs the sync ones."""

    def __init__(
        self, admission: AdmissionQueue, executor: concurrent.futures.Executor, *, observer: Observer = NULL_OBSERVER
    ) -> None:
        self.admission = admission
        self.executor = executor
        #: Told each forward's queue wait and run time (:class:`~axon_grpc.metrics.observer.Observer`).
        self.observer: Observer = observer

    async def _slot(self, synapse: Synapse, priority: float, limit: Limit) -> None:
        try:
            await self.admission.acquire(priority, limit.deadline)
        except RequestTimeout:
            raise timed_out(synapse) from None

    async def run(self, endpoint: Endpoint, synapse: Synapse, priority: float, limit: Limit) -> Synapse:
        """The forward's answer; raises 408 past the limit, 503 when shed, 500 on a wrong type."""
        began = time.perf_counter()
        await self._slot(synapse, priority, limit)
        admitted = time.perf_counter()
        observer = self.observer
        observer.queued(endpoint.name, admitted - began)
        try:
            if endpoint.forward_is_async:
                try:
                    work = cast(Awaitable[Synapse], endpoint.forward_fn(synapse))
                    result = await (work if not limit.timed else within(work, limit.remaining()))
                finally:
                    self.admission.release()
            elif endpoint.inline:
                try:
                    result = endpoint.forward_fn(synapse)
                finally:
                    self.admission.release()
            else:
                result = await self._on_pool(endpoint, synapse, limit)
        except (asyncio.TimeoutError, TimeoutError):
            raise timed_out(synapse) from None
        finally:
            observer.forwarded(endpoint.name, time.perf_counter() - admitted)
        if not isinstance(result, endpoint.synapse_class):
            raise InternalServerError(
                f"forward for {endpoint.name} returned {type(result).__name__}, not {endpoint.name}"
            )
        return result

    async def _on_pool(self, endpoint: Endpoint, synapse: Synapse, limit: Limit) -> Any:
        """A sync forward on the pool; its slot is freed when the thread is done.

        One wake-up of the loop per call: the worker's completion both settles the
        caller's future and releases the slot. A result that arrives after the caller
        gave up is discarded and counted as late.
        """
        loop = asyncio.get_running_loop()
        admission = self.admission
        waiter: asyncio.Future[Any] = loop.create_future()

        def finished(work: concurrent.futures.Future[Any]) -> None:
            admission.release()
            if waiter.done():
                if not work.cancelled():
                    admission.stats.late += 1
            elif work.cancelled():
                waiter.cancel()
            elif (error := work.exception()) is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(work.result())

        def on_done(work: concurrent.futures.Future[Any]) -> None:
            try:
                loop.call_soon_threadsafe(finished, work)
            except RuntimeError:  # the loop is closed: the axon has stopped
                pass

        try:
            work = self.executor.submit(endpoint.forward_fn, synapse)
        except BaseException:
            admission.release()
            raise
        work.add_done_callback(on_done)
        return await (waiter if not limit.timed else within(waiter, limit.remaining()))

    async def stream(
        self, endpoint: Endpoint, synapse: Synapse, priority: float, limit: Limit
    ) -> AsyncGenerator[Any, None]:
        """Chunks of a streaming forward, under the same admission and time limit as a call.

        Closing this generator (the caller went away, or the deadline passed) closes
        the forward's own generator, so it sees ``GeneratorExit`` or cancellation, and
        frees the slot. The limit is always timed here: a client that stops reading
        must not hold a slot past its deadline.
        """
        began = time.perf_counter()
        await self._slot(synapse, priority, limit)
        self.observer.queued(endpoint.name, time.perf_counter() - began)
        chunks: AsyncIterator[Any] | None = None
        loop = asyncio.get_running_loop()
        try:
            chunks = await open_stream(
                endpoint.forward_fn,
                synapse,  # type: ignore[arg-type]
                lambda fn, s: loop.run_in_executor(self.executor, fn, s),
            )
            deadline = limit.deadline
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                try:
                    chunk = await within(chunks.__anext__(), remaining)
                except StopAsyncIteration:
                    return
                except (asyncio.TimeoutError, TimeoutError):
                    raise timed_out(synapse) from None
                yield chunk
        finally:
            self.admission.release()
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
