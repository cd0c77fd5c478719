"""What a transport hands the pipeline (:class:`Call`) and what it gets back (:class:`Outcome`).

Every transport (grpc.aio, the HTTP bridge, the Envoy edge) translates its protocol
into a ``Call``, awaits ``Pipeline.handle(call)`` and translates the ``Outcome``
back; nothing else. ``handle`` never raises for a request's fault: every refusal is
an ``Outcome`` with its status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.server.endpoints import Endpoint
    from axon_grpc.synapse import Synapse

#: The transport kinds a call can arrive by.
GRPC = "grpc"  #: protobuf message bytes; legacy body hash = SHA3-256 of those bytes
HTTP = "http"  #: the legacy JSON body; legacy body hash over ``required_hash_fields``

#: Reads the whole request body; raises :class:`~axon_grpc.errors.RequestTooLarge` past the limit.
BodyReader = Callable[[], Awaitable[bytes]]


@dataclass(eq=False)
class Call:
    """One request as the pipeline sees it, whatever carried it."""

    #: The synapse name: the last segment of ``/axon.v1.Axon/{Name}`` or of the HTTP path.
    name: str
    #: Request metadata or HTTP headers: lowercase keys, ``str`` values (binary metadata left out).
    headers: Mapping[str, str]
    #: :data:`GRPC` or :data:`HTTP`: how the body is encoded and hashed.
    transport: str = GRPC
    #: The body, when the transport already has it (gRPC always does).
    body: bytes | None = None
    #: Reads the body when ``body`` is None (the HTTP bridge reads it only once admitted).
    read_body: BodyReader | None = None
    peer_ip: str | None = None
    peer_port: int | None = None
    #: ``time.monotonic()`` value at which the caller gives up (gRPC ``grpc-timeout``).
    deadline: float | None = None
    #: True when the transport itself cancels the call at ``deadline`` (grpc.aio does),
    #: so the pipeline needs no timer of its own for it.
    deadline_enforced: bool = False
    #: What btauth/1 signs besides the body: the HTTP method and the path (with query).
    method: str = "POST"
    path: str = ""


@dataclass(eq=False)
class Outcome:
    """The pipeline's answer to one :class:`Call`.

    ``status`` is the HTTP-style code of the one status table (200 on success);
    ``message`` the short fixed text that may go on the wire; ``synapse`` the
    answered synapse on success, or the synapse that carries the error (the request's
    own once it was built, else a base :class:`~axon_grpc.synapse.Synapse`); its
    ``axon`` terminal info is the axon's own (status, process time, hotkey, nonce,
    uuid, version; a signature on signed errors).

    A streaming synapse's outcome has ``stream``: the forward's chunk values. The
    first chunk was already awaited, so a request that fails at once has no stream and
    its own status. Once ``stream`` is exhausted (or closed), ``status``, ``message``
    and ``synapse`` hold the final result: a failure after the first chunk shows there.
    """

    status: int
    message: str
    synapse: Synapse
    #: The attached endpoint the call reached (its schema encodes the answer), else None.
    endpoint: Endpoint | None = None
    stream: AsyncIterator[Any] | None = None
    #: The decoded request body as the transport's codec read it (HTTP: the JSON
    #: object), for answers that echo parts of it; None when it was never read.
    request_body: Any = None
    #: Why a call was not answered 200 (an :class:`~axon_grpc.errors.Reason`); None on success.
    reason: str | None = None
    #: The response message bytes, when the pipeline serialised them already (a signed
    #: gRPC answer's hash is over exactly these bytes); None: the transport encodes ``synapse``.
    reply: bytes | None = None
    #: ``time.monotonic()`` by which a stream must be written out. A transport whose write
    #: is still blocked then (a client that stopped reading) gives up and calls :meth:`cut`,
    #: so the forward's slot never outlives the call's deadline.
    deadline: float | None = None

    def remaining(self) -> float | None:
        """Seconds left before ``deadline`` (never below zero), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    async def cut(self, error: Exception) -> None:
        """End ``stream`` with ``error`` as if the forward had raised it: the outcome turns
        into that failure, the forward is closed and its slot freed."""
        chunks = self.stream
        if chunks is None:
            return
        try:
            await chunks.athrow(error)  # type: ignore[attr-defined]
        except StopAsyncIteration:  # the failure is recorded on the outcome
            pass
        except Exception as e:  # the stream had already ended: nothing to record
            if e is not error:
                raise
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    @property
    def ok(self) -> bool:
        return self.status == 200

    async def encoded(self, encode: Callable[[Any], bytes]) -> AsyncIterator[bytes]:
        """``stream``'s chunks through a transport's ``encode``.

        A chunk ``encode`` refuses (raises) fails the stream like a forward's own error
        would: the outcome turns into that failure and the chunks stop.
        """
        chunks = self.stream
        if chunks is None:
            return
        try:
            async for chunk in chunks:
                try:
                    message = encode(chunk)
                except Exception as e:
                    await self.cut(e)
                    return
                yield message
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
