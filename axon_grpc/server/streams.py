"""The stream path of the pipeline: a streaming synapse's first chunk, then its relay.

A stream is opened once the call passed stages 1-6 of :mod:`axon_grpc.server.pipeline`:
its first chunk is awaited before the status goes out (a forward that fails before it
answers an error, not an empty stream); then the chunks are relayed as they come, and
the stream's end (success, failure, the deadline, or the caller leaving) is reported
once, with the call's duration.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator

from axon_grpc.errors import Reason, Status
from axon_grpc.metrics.observer import NO_SCHEME
from axon_grpc.server.call import Codec, Outcome, Stream
from axon_grpc.server.endpoints import Endpoint
from axon_grpc.server.forwarding import Limit, timed_out
from axon_grpc.synapse import Synapse, TerminalInfo

if TYPE_CHECKING:
    from axon_grpc.server.pipeline import Pipeline

#: A cancellation this close to the call's deadline is the deadline's (the transport's timer
#: and the pipeline's reading of it are a clock read apart).
DEADLINE_SLACK_S = 0.05


def ended_early(deadline: float | None) -> tuple[int, str]:
    """The status and reason of a call cancelled before its answer (one rule, every transport):
    408 ``deadline`` once the call's deadline has come, else 499 ``cancelled`` (the caller left)."""
    if deadline is not None and time.monotonic() >= deadline - DEADLINE_SLACK_S:
        return Status.TIMEOUT, Reason.DEADLINE
    return Status.CLIENT_CLOSED, Reason.CANCELLED


async def open_stream(
    pipeline: Pipeline,
    codec: Codec,
    endpoint: Endpoint,
    synapse: Synapse,
    priority: float,
    limit: Limit,
    start: float,
    request_body: Any,
    scheme: str = NO_SCHEME,
) -> Outcome:
    """The stream's outcome once its first chunk came (its ``stream.chunks`` relay the rest),
    or the call's answer when the forward ended without a chunk."""
    own = synapse.__dict__["axon"]
    chunks = pipeline.forwarder.stream(endpoint, synapse, priority, limit)
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        return pipeline.success(codec, endpoint, synapse, start, request_body, own)
    except BaseException:
        await chunks.aclose()
        raise
    pipeline.terminal.stamp(synapse, own, 200, "Success", time.time() - start)  # the status goes out first
    stream = Stream()
    outcome = Outcome(
        200, "Success", synapse, endpoint, stream=stream, request_body=request_body, deadline=limit.deadline
    )
    stream.chunks = _relay(pipeline, codec, outcome, stream, first, chunks, start, own, scheme)
    return outcome


async def _relay(
    pipeline: Pipeline,
    codec: Codec,
    outcome: Outcome,
    stream: Stream,
    first: Any,
    chunks: AsyncIterator[Any],
    start: float,
    own: TerminalInfo,
    scheme: str,
) -> AsyncGenerator[Any, None]:
    """The chunks as they come; ``stream.ending`` is the result once they end or fail (a
    client that left: none, counted cancelled)."""
    endpoint = outcome.endpoint
    assert endpoint is not None
    observer, name = pipeline.observer, endpoint.name
    observer.stream_opened(name)
    final: Outcome | None = None
    try:
        yield first
        observer.stream_chunk(name)
        async for chunk in chunks:
            yield chunk
            observer.stream_chunk(name)
    except asyncio.CancelledError:  # the deadline's cancellation ends it as the deadline's failure
        if ended_early(outcome.deadline)[1] == Reason.DEADLINE:
            final = pipeline.failure(
                codec, endpoint, outcome.synapse, timed_out(outcome.synapse), start, outcome.request_body
            )
        raise
    except Exception as e:
        final = pipeline.failure(codec, endpoint, outcome.synapse, e, start, outcome.request_body)
    else:
        final = pipeline.success(codec, endpoint, outcome.synapse, start, outcome.request_body, own)
    finally:
        try:
            await chunks.aclose()  # type: ignore[attr-defined]
        finally:
            status, reason = (final.status, final.reason) if final is not None else ended_early(outcome.deadline)
            observer.stream_closed(name, final is None)
            d = outcome.synapse.dendrite
            observer.finished(
                name, codec.transport, scheme, status, reason, time.time() - start, d.hotkey if d else None
            )
            stream.ending = final
