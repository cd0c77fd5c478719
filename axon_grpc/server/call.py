"""What a transport hands the pipeline (:class:`Call`) and what it gets back (:class:`Outcome`).

Every transport (grpc.aio, the HTTP bridge, the Envoy edge) translates its protocol
into a ``Call``, awaits ``Pipeline.handle(call)`` and translates the ``Outcome``
back; nothing else. ``handle`` never raises for a request's fault: every refusal is
an ``Outcome`` with its status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Protocol

from axon_grpc.info import split_address

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.server.endpoints import Endpoint
    from axon_grpc.synapse import Synapse

#: Reads the whole request body; raises :class:`~axon_grpc.errors.RequestTooLarge` past the limit.
BodyReader = Callable[[], Awaitable[bytes]]


class Codec(Protocol):
    """A wire format as the pipeline needs it: how a request body becomes a synapse's
    fields and what the legacy hashes cover. The transport puts its codec on each
    :class:`Call`, so the pipeline names no transport (``transports.grpc_codec.GRPC_CODEC``,
    ``transports.json_body.JSON_CODEC``)."""

    #: The ``transport`` label of metrics and logs.
    transport: str
    #: Whether a refusal's message names the rule of docs/SPEC.md it applies (`` (rule Rn)``).
    names_rules: bool

    def check_message_hash(self, path: str, body: bytes, claimed: str) -> bool:
        """When this format hashes the message bytes: raise
        :class:`~axon_grpc.errors.BodyHashMismatch` (400) unless ``claimed`` is their legacy
        hash, and return True; False when it hashes the synapse's ``required_hash_fields``
        instead (checked once the synapse is built)."""

    def decode(self, endpoint: Endpoint, body: bytes) -> tuple[dict[str, Any], Any]:
        """The synapse's user fields of ``body`` and what answers may echo of it (None);
        raises an :class:`~axon_grpc.errors.AxonError` (400, 422) for a body it cannot read."""

    def answer_hash(self, endpoint: Endpoint, synapse: Synapse) -> tuple[bytes | None, str]:
        """What a signed answer's hash covers: the serialised reply when this format sends
        those very bytes (else None), and the hash."""


def parse_peer(peer: str | tuple[Any, ...] | list[Any] | None) -> tuple[str | None, int | None]:
    """The caller's ``(ip, port)``, whichever way a transport names it: a gRPC peer string
    (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``, ``unix:...``), an address an edge in
    front passed on (``1.2.3.4:5678``, ``[::1]:5678``) or an ASGI ``client`` pair. An IPv4
    caller of a dual-stack socket (``::ffff:1.2.3.4``) is its IPv4 address."""
    if not peer:
        return None, None
    if isinstance(peer, str):
        kind, _, address = peer.partition(":")
        if kind in ("ipv4", "ipv6"):
            return split_address(address)
        if kind == "unix":
            return address, None
        return split_address(peer)
    host, port = str(peer[0]), (int(peer[1]) if len(peer) > 1 and peer[1] is not None else None)
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port


@dataclass(eq=False, kw_only=True)
class Call:
    """One request as the pipeline sees it, whatever carried it."""

    #: The synapse name: the last segment of ``/axon.v1.Axon/{Name}`` or of the HTTP path.
    name: str
    #: Request metadata or HTTP headers: lowercase keys, ``str`` values (binary metadata left out).
    headers: Mapping[str, str]
    #: The wire format of the body: how it is decoded and hashed.
    codec: Codec
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

    @property
    def transport(self) -> str:
        """The ``transport`` label of metrics and logs (the codec's)."""
        return self.codec.transport


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
    its own status. An outcome never changes once ``handle`` returned it: the result a
    stream ends with (a failure after the first chunk included) is :attr:`final`.
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

    @property
    def final(self) -> Outcome:
        """The call's result: once ``stream`` has ended, the outcome it ended with; else this one."""
        ending = getattr(self.stream, "ending", None)
        return ending if ending is not None else self

    def remaining(self) -> float | None:
        """Seconds left before ``deadline`` (never below zero), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    async def cut(self, error: Exception) -> None:
        """End ``stream`` with ``error`` as if the forward had raised it: :attr:`final` is
        that failure, the forward is closed and its slot freed."""
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
        would: :attr:`final` is that failure and the chunks stop.
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


class Stream:
    """A streaming answer's chunks (the pipeline's async generator) and, once they end,
    the outcome they ended with (:attr:`Outcome.final`)."""

    __slots__ = ("chunks", "ending")

    def __init__(self) -> None:
        self.chunks: AsyncGenerator[Any, None] | None = None
        self.ending: Outcome | None = None

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        assert self.chunks is not None
        return await self.chunks.__anext__()

    async def athrow(self, error: BaseException) -> Any:
        assert self.chunks is not None
        return await self.chunks.athrow(error)

    async def aclose(self) -> None:
        if self.chunks is not None:
            await self.chunks.aclose()
