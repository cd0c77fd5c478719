"""Signature and nonce checks for both signing schemes, bound to the axon's stores and policy.

The pipeline calls :meth:`Verifier.verify_legacy`, :meth:`Verifier.verify_btauth` or, for a
call by an ``axon-session/1`` session, :meth:`Verifier.verify_session` (the scheme is decided
once per call from its headers); each raises
:class:`~axon_grpc.errors.NotVerifiedException` (401) with the reason, and records
the nonce only once the signature verified.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Awaitable, Callable, Mapping

from axon_grpc.auth import btauth
from axon_grpc.auth.legacy import VerifyPolicy, verify_legacy
from axon_grpc.auth.nonces import NonceStore, NonceVerdict
from axon_grpc.metrics.observer import GRPC, NULL_OBSERVER, Observer
from axon_grpc.synapse import Synapse

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.auth.credentials import Credentials
    from axon_grpc.auth.sessions import Sessions


def store_kind(store: NonceStore) -> str:
    """The ``store`` label of a nonce store: memory, redis, or its class name."""
    name = type(store).__name__
    return {"InMemoryNonceStore": "memory", "RedisNonceStore": "redis"}.get(name, name)


class ObservedStore:
    """A nonce store whose checks (verdict, latency, failure) are told to the verifier's observer."""

    __slots__ = ("kind", "store", "verifier")

    def __init__(self, store: NonceStore, verifier: Verifier) -> None:
        self.store = store
        self.kind = store_kind(store)
        self.verifier = verifier

    async def check_and_store(self, key: str, nonce: int, oldest_allowed: int | None) -> NonceVerdict:
        began = time.perf_counter()
        try:
            verdict = await self.store.check_and_store(key, nonce, oldest_allowed)
        except Exception:
            self.verifier.observer.nonce_checked(self.kind, None, time.perf_counter() - began)
            raise
        self.verifier.observer.nonce_checked(self.kind, verdict, time.perf_counter() - began)
        return verdict

    async def close(self) -> None:
        await self.store.close()


class Verifier:
    """Checks callers' signatures against ``receiver`` (the axon's hotkey address)."""

    def __init__(
        self,
        receiver: Callable[[], str],
        legacy_store: NonceStore,
        btauth_store: NonceStore,
        policy: VerifyPolicy,
        *,
        observer: Observer = NULL_OBSERVER,
        sessions: Sessions | None = None,
    ) -> None:
        self._receiver = receiver
        self.legacy_store = legacy_store
        self.btauth_store = btauth_store
        self.policy = policy
        #: Told of every nonce check (:class:`~axon_grpc.metrics.observer.Observer`).
        self.observer: Observer = observer
        self._observed: dict[int, ObservedStore] = {}
        #: The axon's sessions (``axon-session/1``), or None where none are served.
        self.sessions = sessions

    def _store(self, store: NonceStore) -> NonceStore:
        """``store``, timed for the observer (the wrapper is made once per store)."""
        if self.observer is NULL_OBSERVER:
            return store
        observed = self._observed.get(id(store))
        if observed is None or observed.store is not store:
            observed = self._observed[id(store)] = ObservedStore(store, self)
        return observed

    def replay_store(self) -> NonceStore:
        """The legacy scheme's nonce store (timed for the observer): where session opens' nonces go."""
        return self._store(self.legacy_store)

    async def verify_legacy(self, synapse: Synapse, crypto: str = "sr25519") -> None:
        """``{nonce}.{hotkey}.{axon}.{uuid}.{body_hash}`` over the synapse's dendrite info."""
        await verify_legacy(synapse, self._receiver(), self._store(self.legacy_store), self.policy, crypto)

    def check_btauth_headers(self, headers: Mapping[str, str]) -> None:
        """The btauth/1 checks that need no body (shape, receiver, freshness): run before it is read."""
        policy = self.policy
        btauth.check_headers(
            headers,
            receiver=self._receiver(),
            max_age_s=policy.btauth_max_age_s,
            allowed_skew_s=policy.btauth_allowed_skew_s,
            require_receiver=policy.btauth_require_receiver,
        )

    async def verify_btauth(self, headers: Mapping[str, str], body: bytes, method: str, path: str) -> None:
        """btauth/1 over ``method``, ``path`` and the raw ``body``."""
        policy = self.policy
        await btauth.verify_btauth(
            headers,
            body,
            method=method,
            path=path,
            receiver=self._receiver(),
            store=self._store(self.btauth_store),
            max_age_s=policy.btauth_max_age_s,
            allowed_skew_s=policy.btauth_allowed_skew_s,
            require_receiver=policy.btauth_require_receiver,
        )

    def claimed_hotkey(self, credentials: Credentials) -> str | None:
        """The hotkey a call claims before it is verified (a session call: its session's)."""
        if credentials.hotkey is None and self.sessions is not None:
            return self.sessions.hotkey_of(credentials.uuid)
        return credentials.hotkey

    async def verify_session(
        self,
        credentials: Credentials,
        path: str,
        timeout: str | None,
        transport: str,
        read_body: Callable[[], Awaitable[bytes]],
    ) -> bytes:
        """A session call (docs/SESSIONS.md): the session and counter, then the body is read and
        the MAC checked; fills ``credentials`` with the session's hotkey and the body hash and
        returns the body. ``timeout``: the ``timeout`` metadata as sent (the MAC covers it);
        ``transport``: the call's (sessions are served over gRPC only)."""
        from axon_grpc.auth.sessions import not_served

        sessions = self.sessions
        grpc = transport == GRPC
        if sessions is None or not grpc:
            raise not_served(grpc)
        session = sessions.find(credentials.uuid, credentials.nonce, credentials.signature)
        body = await read_body()
        counter, mac = credentials.nonce, credentials.signature
        assert counter is not None and mac is not None  # find() refuses calls without them
        credentials.body_hash = sessions.authenticate(session, counter, mac, path, body, timeout)
        credentials.hotkey = session.hotkey
        return body
