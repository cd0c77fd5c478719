"""The one stream writer: a streaming :class:`~axon_grpc.server.call.Outcome` out through a
transport, with one deadline rule and one disconnect rule for every transport.

The transport gives its encoded messages and its ``write`` (grpc.aio's ``context.write``,
an ASGI ``send`` of a body part); :func:`write_stream` writes them and tells how it ended:

- :data:`DONE`: every message was written; the transport sends the final status, which
  ``outcome`` now holds (a failure midway included).
- :data:`CUT`: the stream was not written out by ``outcome.deadline`` (a caller that
  stopped reading blocks the writes): the stream is cut with 408 there, the forward closed
  and its slot freed. The transport may try to say so, without waiting on the caller.
- :data:`GONE`: the caller left (``gone`` completed, or a write failed on a closed
  connection): the forward is closed and its slot freed; there is no one to answer.

A cancellation of the writing task itself (grpc.aio cancels the handler at the gRPC deadline
or when the caller cancels; the Envoy adapter's ``grpc-timeout`` timer) closes the stream
the same way and propagates.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

from axon_grpc.server.call import Outcome
from axon_grpc.server.forwarding import timed_out

logger = logging.getLogger("axon_grpc")

DONE = "done"
CUT = "cut"
GONE = "gone"

Write = Callable[[bytes], Awaitable[None]]


class _WriteFailed(Exception):
    """A write raised: the connection is gone."""


async def _pump(messages: AsyncIterator[bytes], write: Write) -> None:
    async for message in messages:
        try:
            await write(message)
        except Exception as e:
            raise _WriteFailed from e


async def write_stream(
    outcome: Outcome, messages: AsyncIterator[bytes], write: Write, gone: asyncio.Future[Any] | None = None
) -> str:
    """Write ``messages`` (``outcome``'s stream, encoded) with ``write``; :data:`DONE`,
    :data:`CUT` or :data:`GONE` (see the module docstring). ``gone`` completes when the
    caller leaves (the transport's own watcher, never cancelled here)."""
    pump = asyncio.ensure_future(_pump(messages, write))
    waiting = (pump,) if gone is None else (pump, gone)
    try:
        done, _ = await asyncio.wait(waiting, timeout=outcome.remaining(), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await _stop(pump, messages, None)
        raise
    if pump in done:
        error = pump.exception()
        if error is None:
            return DONE
        if not isinstance(error, _WriteFailed):
            raise error  # a failure of the codec: the transport's own error path
        logger.debug("a stream's caller left: %r", error.__cause__)
        await _close(messages)
        return GONE
    expired = not done
    await _stop(pump, messages, outcome if expired else None)
    return CUT if expired else GONE


async def _stop(pump: asyncio.Future[None], messages: AsyncIterator[bytes], cut: Outcome | None) -> None:
    """End the writing; ``cut``'s stream first turns into the deadline's 408."""
    pump.cancel()
    await asyncio.gather(pump, return_exceptions=True)
    if cut is not None:
        await cut.cut(timed_out(cut.synapse))
    await _close(messages)


async def _close(messages: AsyncIterator[bytes]) -> None:
    try:
        await messages.aclose()  # type: ignore[attr-defined]
    except Exception:
        logger.debug("closing a stream failed", exc_info=True)
