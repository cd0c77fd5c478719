"""Stopping the in-process servers: the requests in flight, drained within a grace.

Both transports run each request through :meth:`Drain.run`, which knows the request's
task. On stop, :meth:`Drain.wait` gives them the grace; whatever is still running then
is cancelled and answered ``503 Service unavailable: shutting down`` by the transport
(unary calls and HTTP requests get the refusal outcome; a stream already under way ends
with that status where its protocol still can say so).
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

from axon_grpc.server.call import Outcome
from axon_grpc.synapse import Synapse, TerminalInfo

T = TypeVar("T")

#: The answer to a request the grace could not let finish.
SHUTTING_DOWN = "Service unavailable: shutting down"
#: How long cancelled requests get to send their 503 after the grace.
ANSWER_S = 0.5
#: How often the drain looks whether the requests in flight are done.
POLL_S = 0.02


def shutting_down() -> Outcome:
    """503 ``Service unavailable: shutting down`` (unsigned, as overload refusals)."""
    synapse = Synapse()
    synapse.__dict__["axon"] = TerminalInfo.model_construct(status_code=503, status_message=SHUTTING_DOWN)
    return Outcome(503, SHUTTING_DOWN, synapse)


class Drain:
    """The requests in flight on this axon's transports."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()
        #: Set once the grace is over: a cancellation seen then is the drain's, not the client's.
        self.expired = False

    def reset(self) -> None:
        """Serve again (a restarted axon)."""
        self.expired = False

    async def run(self, work: Awaitable[T], refused: Callable[[], T]) -> T:
        """``work``'s result; ``refused()`` when the drain cut it off at the grace."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always inside a task under a server
            return await work
        self.tasks.add(task)  # type: ignore[arg-type]
        try:
            return await work
        except asyncio.CancelledError:
            if not self.expired:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+: the task goes on
            if uncancel is not None:
                uncancel()
            return refused()
        finally:
            self.leave(task)

    def enter(self) -> asyncio.Task[object] | None:
        """Count the current task in (for work that is not one awaitable, such as a stream)."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)  # type: ignore[arg-type]
        return task  # type: ignore[return-value]

    def leave(self, task: asyncio.Task[object] | None) -> None:
        self.tasks.discard(task)  # type: ignore[arg-type]

    async def wait(self, grace: float | None) -> None:
        """Until nothing is in flight or ``grace`` seconds passed; then cut off the rest
        and give them :data:`ANSWER_S` to answer."""
        deadline = time.monotonic() + (grace or 0.0)
        while self.tasks and time.monotonic() < deadline:
            await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        if not self.tasks:
            return
        self.expired = True
        cut = list(self.tasks)
        for task in cut:
            task.cancel()
        await asyncio.wait(cut, timeout=ANSWER_S)
