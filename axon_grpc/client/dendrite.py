"""The Dendrite: the Python client that signs synapses and calls axons, over gRPC or the
legacy HTTP protocol (SDK 7.2-10.5 axons and this project's bridge), chosen per axon.

The transports live beside it: :mod:`~axon_grpc.client.grpc_transport`,
:mod:`~axon_grpc.client.http_transport`; what is signed and checked, in
:mod:`~axon_grpc.client.signing`.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid as uuid_lib
from typing import Any, AsyncIterator, Mapping, Sequence, TypeVar

from axon_grpc._types import WalletLike
from axon_grpc.auth.keys import Keypair
from axon_grpc.client.answer import Result, timeout_result, unverified_result
from axon_grpc.client.grpc_transport import GrpcLink
from axon_grpc.client.http_transport import MAX_ANSWER_BYTES, HttpLink
from axon_grpc.client.signing import AUTH_SCHEMES, RequestSigner
from axon_grpc.client.tls import ClientTls, PemSource, is_pem
from axon_grpc.info import AxonInfo
from axon_grpc.streaming import is_streaming
from axon_grpc.synapse import Synapse

S = TypeVar("S", bound=Synapse)

__all__ = ["AUTH_SCHEMES", "TRANSPORTS", "Dendrite"]

#: How a Dendrite reaches an axon.
TRANSPORTS = (
    "grpc",  #: this project's gRPC contract (proto/axon/v1/axon.proto)
    "http",  #: the legacy HTTP protocol of SDK 7.2-10.5 axons and of the HTTP bridge
    "auto",  #: gRPC first; HTTP when the axon does not answer gRPC; the choice remembered
)
#: Seconds ``auto`` remembers which protocol an axon answered.
REMEMBER_S = 600.0
#: Why ``verify_response=True`` refuses every stream (no request is sent).
STREAMS_UNSIGNED = "streamed answers are not signed (verify_response covers unary calls only)"


def _target_info(target: Any) -> AxonInfo:
    """An :class:`AxonInfo` of ``target``: one, an Axon, or any record with ``ip``, ``port``
    and ``hotkey`` (a Bittensor SDK's ``AxonInfo`` from a metagraph, for one)."""
    if isinstance(target, AxonInfo):
        return target
    info = getattr(target, "info", None)
    if callable(info):
        return info()
    if all(hasattr(target, key) for key in ("ip", "port", "hotkey")):
        return AxonInfo(
            version=int(getattr(target, "version", 0) or 0),
            ip=str(target.ip),
            port=int(target.port),
            ip_type=int(getattr(target, "ip_type", 0) or (6 if ":" in str(target.ip) else 4)),
            hotkey=str(target.hotkey),
            coldkey=str(getattr(target, "coldkey", "") or ""),
        )
    raise TypeError(f"cannot call {type(target).__name__}: pass an AxonInfo, an Axon or a record with ip, port, hotkey")


class Dendrite:
    """Signs each request with ``wallet.hotkey`` and calls one or many axons concurrently.

    ``wallet`` is anything with ``hotkey.ss58_address`` and ``hotkey.sign(message)``;
    without one, a throw-away sr25519 key is generated. ``auth="btauth"`` signs the
    way Bittensor SDK 11's ``http_auth`` does instead of the legacy way.
    ``transport`` is how axons are reached unless :meth:`use` pins one: ``"grpc"``,
    ``"http"`` (the legacy protocol) or ``"auto"`` (gRPC, else HTTP, remembered per
    address for ``remember_s`` seconds). With ``verify_response=True`` every request asks
    for a signed answer, and an answer whose signature is missing or wrong is refused:
    the synapse keeps the fields it was sent with and fails with status 422
    ``Answer not verified: {reason}``. Streamed answers are never signed, so such a
    Dendrite refuses streams the same way, without sending them.

    Streaming synapses go over either transport. Over HTTP the synapse's
    ``process_streaming_response`` reads the body; it may read ``max_answer_bytes`` of it
    (64 MiB) before the stream fails with 413, and no read outlives the call's timeout.

    TLS over gRPC (:mod:`axon_grpc.client.tls`): ``tls_ca`` (PEM text, bytes or path) is trusted
    for every axon; ``certificates`` pins one certificate per axon (by hotkey or
    ``ip:port``), as do the certificates axons published in the local registry
    (``forward(netuid=...)``); ``tls_cert``/``tls_key`` are this client's certificate for
    axons that require one.

    ``sessions`` (gRPC, docs/SESSIONS.md): ``"auto"`` opens a session with each axon that
    announces them and sends its calls with the session's MAC instead of a signature (renewed
    before it ends, opened again once when the axon no longer holds it, signed calls where
    none can be opened); ``"required"`` fails a call whose session cannot be opened; ``"off"``
    signs every call.
    """

    def __init__(
        self,
        wallet: WalletLike | None = None,
        *,
        external_ip: str | None = None,
        auth: str = "legacy",
        transport: str = "grpc",
        verify_response: bool = False,
        remember_s: float = REMEMBER_S,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        tls_ca: PemSource | None = None,
        certificates: Mapping[str, PemSource] | None = None,
        tls_cert: PemSource | None = None,
        tls_key: PemSource | None = None,
        sessions: str = "auto",
    ) -> None:
        if auth not in AUTH_SCHEMES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_SCHEMES)}, not {auth!r}")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        #: How requests are signed: ``legacy`` (``bt_header_*``) or ``btauth`` (SDK 11's btauth/1).
        self.auth = auth
        #: How axons are reached unless pinned with :meth:`use`.
        self.transport = transport
        self.verify_response = verify_response
        self.remember_s = remember_s
        if wallet is None:
            self.keypair: Any = Keypair.generate()
        else:
            self.keypair = getattr(wallet, "hotkey", wallet)
        self.crypto: str = getattr(self.keypair, "crypto_type", "sr25519")
        if isinstance(self.crypto, int):  # Bittensor keypairs number their crypto types
            self.crypto = "ed25519" if self.crypto == 0 else "sr25519"
        self.uuid = str(uuid_lib.uuid1())
        self.external_ip = external_ip or "127.0.0.1"
        self.signer = RequestSigner(self.keypair, self.crypto, auth, self.uuid, self.external_ip, verify_response)
        #: Whom this Dendrite trusts over TLS, per axon (cleartext where nothing is known).
        self.tls = ClientTls.build(tls_ca, tls_cert, tls_key, certificates)
        #: Whether gRPC calls go by session keys (``axon-session/1``): auto, off or required.
        self.sessions = sessions
        self.grpc = GrpcLink(self.signer, verify_response, self.tls, sessions)
        self.http = HttpLink(self.signer, verify_response, max_answer_bytes)
        self._pinned: dict[str, str] = {}
        self._learned: dict[str, tuple[str, float]] = {}
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_thread: threading.Thread | None = None
        self._sync_lock = threading.Lock()  # one private loop, whichever threads call query() first

    # -- transports per axon ------------------------------------------------------------------
    def use(self, axon: Any, transport: str | None) -> None:
        """Reach ``axon`` (an AxonInfo, an Axon or ``"ip:port"``) by ``transport`` from now on
        (None: back to the Dendrite's own ``transport``)."""
        if transport is not None and transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        address = axon if isinstance(axon, str) else _target_info(axon).ip_str()
        if transport is None:
            self._pinned.pop(address, None)
        else:
            self._pinned[address] = transport
        self._learned.pop(address, None)

    def transport_for(self, axon: Any) -> str:
        """``grpc`` or ``http`` when known for ``axon`` (pinned, configured or learned), else ``auto``."""
        address = axon if isinstance(axon, str) else _target_info(axon).ip_str()
        kind = self._pinned.get(address, self.transport)
        if kind != "auto":
            return kind
        learned = self._learned.get(address)
        if learned is not None and learned[1] > time.monotonic():
            return learned[0]
        return "auto"

    def _learn(self, address: str, kind: str) -> None:
        self._learned[address] = (kind, time.monotonic() + self.remember_s)

    # -- public API -------------------------------------------------------------------------
    async def forward(
        self,
        axons: Any = None,
        synapse: Synapse | None = None,
        timeout: float = 12.0,
        deserialize: bool = True,
        run_async: bool = True,
        streaming: bool = False,
        *,
        netuid: int | None = None,
    ) -> Any:
        """Send ``synapse`` to one axon (returns one result) or a list (returns a list).

        Each axon gets its own copy. With ``deserialize`` the result is
        ``synapse.deserialize()``; otherwise the synapse with its status filled. With
        ``streaming`` (a :class:`StreamingSynapse`), each result is an async iterator
        of the chunks, ending with the final synapse. ``netuid=N`` instead of ``axons``
        calls every axon of subnet N in the local registry (:meth:`resolve`).
        """
        if axons is None:
            if netuid is None:
                raise TypeError("forward() needs axons or netuid")
            axons = self._resolve_pinned(netuid)
        synapse = synapse if synapse is not None else Synapse()
        single = not isinstance(axons, (list, tuple))
        targets: Sequence[Any] = [axons] if single else list(axons)
        if streaming:
            if not is_streaming(type(synapse)):
                raise ValueError(f"streaming=True needs a StreamingSynapse; {type(synapse).__name__} is not one")
            streams = [self.call_stream(t, synapse.model_copy(deep=True), timeout, deserialize) for t in targets]
            return streams[0] if single else streams
        calls = [self.call(t, synapse.model_copy(deep=True), timeout, deserialize) for t in targets]
        if run_async:
            results = list(await asyncio.gather(*calls))
        else:
            results = [await c for c in calls]
        return results[0] if single else results

    __call__ = forward

    @staticmethod
    def resolve(netuid: int, registry: Any = None) -> list[AxonInfo]:
        """The axons registered on ``netuid`` in ``registry`` (default: the local registry)."""
        if registry is None:
            from axon_grpc.registry import LocalRegistry

            registry = LocalRegistry()
        return list(registry.axons(netuid))

    def _resolve_pinned(self, netuid: int) -> list[AxonInfo]:
        """The local registry's axons of ``netuid``, pinning the PEM certificates they published."""
        from axon_grpc.registry import LocalRegistry

        entries = LocalRegistry().entries(netuid)
        for entry in entries:
            if is_pem(entry.certificate) and entry.info.hotkey not in self.tls.pins:
                self.tls.pin(entry.info.hotkey, str(entry.certificate).encode())
        return [entry.info for entry in entries]

    def query(self, *args: Any, **kwargs: Any) -> Any:
        """Blocking ``forward`` for code without an event loop (or called from inside one)."""
        loop = self._ensure_sync_loop()
        return asyncio.run_coroutine_threadsafe(self.forward(*args, **kwargs), loop).result()

    async def call(self, target_axon: Any, synapse: S, timeout: float = 12.0, deserialize: bool = True) -> Any:
        """One signed call; every failure becomes a status on ``synapse.dendrite``.

        A streaming synapse is streamed and its chunks dropped: the final synapse is
        the result.
        """
        if is_streaming(type(synapse)):
            result: Any = None
            async for item in self.call_stream(target_axon, synapse, timeout, deserialize=False):
                result = item  # the chunks, then the final synapse: keep the last
            return result.deserialize() if deserialize else result
        start = time.time()
        info = _target_info(target_axon)
        kind = self.transport_for(info)
        if kind == "grpc":
            outcome = await self.grpc.call(info, synapse, timeout)
        elif kind == "http":
            outcome = await self.http.call(info, synapse, timeout)
        else:
            outcome = await self._auto(info, synapse, timeout)
        self._finish(synapse, outcome, start)
        return synapse.deserialize() if deserialize else synapse

    async def _auto(self, info: AxonInfo, synapse: Synapse, timeout: float) -> Result:
        """gRPC; when no axon answered it (the port speaks HTTP/1.1, or nothing listens), the
        legacy HTTP protocol within the time left. The protocol that answered is remembered."""
        address = info.ip_str()
        started = time.monotonic()
        outcome = await self.grpc.call(info, synapse, timeout)
        if outcome.spoken:
            self._learn(address, "grpc")
            return outcome
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            return timeout_result(timeout)
        outcome = await self.http.call(info, synapse, remaining)
        if outcome.spoken:
            self._learn(address, "http")
        return outcome

    async def call_stream(
        self, target_axon: Any, synapse: S, timeout: float = 12.0, deserialize: bool = True
    ) -> AsyncIterator[Any]:
        """Stream a :class:`StreamingSynapse`: yields each chunk, then the final synapse.

        The transport is chosen as for :meth:`call`; ``auto`` falls back to HTTP only
        when no gRPC chunk came.
        """
        start = time.time()
        info = _target_info(target_axon)
        done: list[Result] = []
        if self.verify_response:
            done.append(unverified_result(STREAMS_UNSIGNED))
        else:
            kind = self.transport_for(info)
            link = self.http if kind == "http" else self.grpc
            chunks = (
                self._auto_stream(info, synapse, timeout, done)
                if kind == "auto"
                else link.stream(info, synapse, timeout, done)
            )
            async for chunk in chunks:
                yield chunk
        self._finish(synapse, done[-1] if done else Result(500, "stream ended without a status"), start)
        yield synapse.deserialize() if deserialize else synapse

    async def _auto_stream(
        self, info: AxonInfo, synapse: Synapse, timeout: float, done: list[Result]
    ) -> AsyncIterator[Any]:
        """:meth:`_auto` for a stream: HTTP when the gRPC attempt yielded nothing and was not answered."""
        address = info.ip_str()
        started = time.monotonic()
        spoken = False
        async for chunk in self.grpc.stream(info, synapse, timeout, done):
            spoken = True
            yield chunk
        if spoken or (done and done[-1].spoken):
            self._learn(address, "grpc")
            return
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            done.append(timeout_result(timeout))
            return
        async for chunk in self.http.stream(info, synapse, remaining, done):
            yield chunk
        if done and done[-1].spoken:
            self._learn(address, "http")

    async def aclose(self) -> None:
        """Close the connections opened on the running loop."""
        await asyncio.gather(self.grpc.aclose(), self.http.aclose())

    def close_session(self) -> None:
        """Close every connection and the private loop of ``query``."""
        loop, thread = self._sync_loop, self._sync_thread
        if loop is not None and thread is not None:
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._sync_loop = self._sync_thread = None

    async def __aenter__(self) -> Dendrite:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _finish(synapse: Synapse, outcome: Result, start: float) -> None:
        d = synapse.dendrite
        assert d is not None
        d.__dict__.update(status_code=outcome.status, status_message=outcome.message, process_time=time.time() - start)

    def _ensure_sync_loop(self) -> asyncio.AbstractEventLoop:
        with self._sync_lock:
            if self._sync_loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="dendrite-loop", daemon=True)
                thread.start()
                self._sync_loop, self._sync_thread = loop, thread
            return self._sync_loop

    def __str__(self) -> str:
        return f"Dendrite({self.keypair.ss58_address})"

    __repr__ = __str__
