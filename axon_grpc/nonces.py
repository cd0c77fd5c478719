"""Replay protection: the nonce store behind one Protocol.

A store answers one question atomically: may this ``(key, nonce)`` be accepted, and
if so, remember it. The rules (PROTOCOL.md, "Nonce rules"):

- a key seen before accepts only a nonce strictly greater than the one stored;
- a key not seen before accepts a nonce no older than ``oldest_allowed`` (when given).

The in-memory store is bounded: an entry whose nonce is older than ``retention_ns``
is evicted. Because every first-seen nonce must be newer than ``oldest_allowed`` and
``retention_ns`` is at least the widest freshness window, a replay of an evicted
nonce is refused by the freshness rule, so eviction never reopens a replay.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from typing import Protocol, runtime_checkable


class NonceVerdict(enum.Enum):
    """Outcome of :meth:`NonceStore.check_and_store`."""

    ACCEPTED = "accepted"  #: new and fresh; now stored
    STALE = "stale"  #: first nonce of this key, older than the freshness window
    NOT_NEWER = "not_newer"  #: not strictly greater than the nonce last accepted for this key


@runtime_checkable
class NonceStore(Protocol):
    """Where accepted nonces live; one store per axon, shared by every transport."""

    async def check_and_store(self, key: str, nonce: int, oldest_allowed: int | None) -> NonceVerdict:
        """Apply the nonce rules to ``(key, nonce)`` and store it when accepted, atomically."""
        ...  # pragma: no cover

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...  # pragma: no cover


class InMemoryNonceStore:
    """The embedded default: a bounded dict in one process (not shared between processes).

    ``retention_ns`` must be at least the longest freshness window the verifier uses.
    """

    def __init__(self, retention_ns: int) -> None:
        if retention_ns <= 0:
            raise ValueError("retention_ns must be positive")
        self.retention_ns = retention_ns
        # Ordered by last acceptance, so the oldest entries sit at the front.
        self.nonces: OrderedDict[str, int] = OrderedDict()

    async def check_and_store(self, key: str, nonce: int, oldest_allowed: int | None) -> NonceVerdict:
        return self.check_and_store_now(key, nonce, oldest_allowed)

    def check_and_store_now(self, key: str, nonce: int, oldest_allowed: int | None) -> NonceVerdict:
        """Synchronous form (no await between check and store, so it is atomic in a loop)."""
        nonces = self.nonces
        last = nonces.get(key)
        if last is not None:
            if nonce <= last:
                return NonceVerdict.NOT_NEWER
        elif oldest_allowed is not None and nonce <= oldest_allowed:
            return NonceVerdict.STALE
        nonces[key] = nonce
        nonces.move_to_end(key)
        self._evict(time.time_ns() - self.retention_ns)
        return NonceVerdict.ACCEPTED

    def _evict(self, horizon: int) -> None:
        nonces = self.nonces
        while nonces:
            key, oldest = next(iter(nonces.items()))
            if oldest >= horizon:
                return
            del nonces[key]

    def __len__(self) -> int:
        return len(self.nonces)

    async def close(self) -> None:
        self.nonces.clear()


#: ``--axon.nonce_store`` values that select the in-memory store.
MEMORY_STORE_NAMES = ("", "memory")


def open_nonce_store(spec: str, *, retention_ns: int, namespace: str = "", timeout_s: float | None = None
                     ) -> NonceStore | None:
    """The store a ``--axon.nonce_store`` value names: None for ``memory``, else a Redis store.

    ``redis://host:port/db`` (also ``rediss://``, ``unix://``) gives a
    :class:`~axon_grpc.redis_store.RedisNonceStore` namespaced by ``namespace``;
    anything else raises ``ValueError``.
    """
    if spec.strip().lower() in MEMORY_STORE_NAMES:
        return None
    from .redis_store import DEFAULT_TIMEOUT_S, RedisNonceStore

    return RedisNonceStore(spec.strip(), retention_ns=retention_ns, namespace=namespace,
                           timeout_s=timeout_s or DEFAULT_TIMEOUT_S)
