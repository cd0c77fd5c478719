"""Replay protection: the nonce store behind one Protocol.

A store answers one question atomically: may this ``(key, nonce)`` be accepted, and
if so, remember it. The rules, per key (PROTOCOL.md's "Nonce rules", with the legacy
"strictly greater than the last" relaxed into a sliding anti-replay window in the
manner of IPsec, RFC 4303 section 3.4.3):

- a key not seen before accepts a nonce newer than ``oldest_allowed`` (when given);
- a nonce newer than the newest one accepted for the key is accepted;
- a nonce below the newest is accepted once, if it is inside the key's window and not
  seen before, and newer than ``oldest_allowed`` (when given);
- everything else is refused: an exact replay, anything older than the window.

The window. Nonces are ``time.time_ns()`` integers, sparse in nanoseconds, so a
bitmap over nonce values (as IPsec keeps over sequence numbers) does not fit. Each
key keeps the sorted set of its most recent accepted nonces instead, bounded twice:

- by count: the newest nonce plus ``replay_window`` below it (64 by default), so a
  request may be overtaken by up to ``replay_window`` newer ones of the same key;
  once that many are remembered, a nonce at or below the oldest one kept is refused,
  because it can no longer be told apart from one already accepted and forgotten;
- by span: a nonce more than ``replay_span_ns`` (60 s of nonce time by default)
  below the newest is refused, and remembered nonces that far behind are dropped.

So memory per key is at most ``replay_window + 1`` integers. ``replay_window=0`` is
the legacy rule exactly (only a nonce strictly greater than the last is accepted).

Keys are bounded too. The in-memory store evicts a key ``retention_ns`` after it last
accepted a nonce. Every nonce of the key was at most ``max_future_s`` ahead of the
clock when accepted, and a key seen again must pass the freshness rule, which is
narrower than ``retention_ns`` by at least that much; so eviction never reopens a
replay. Requests checked without a freshness rule (``oldest_allowed`` None: dendrites
older than 7.2.0, whose nonces are ``time.monotonic_ns()``) have no such guard, which
is why :attr:`axon_grpc.auth.legacy.VerifyPolicy.retention_ns` is unbounded when the policy
allows those dendrites. With ``max_keys`` distinct keys held, a new key is refused
with :attr:`NonceVerdict.FULL` (never by forgetting another key's nonces).
"""

from __future__ import annotations

import bisect
import enum
import time
from collections import OrderedDict
from typing import Protocol, runtime_checkable

#: Accepted nonces remembered below a key's newest one (0: the legacy strictly-greater rule).
DEFAULT_REPLAY_WINDOW = 64

#: How far below a key's newest nonce (in nonce units, ns) another may still be accepted.
DEFAULT_REPLAY_SPAN_NS = 60 * 10**9

#: Distinct keys the in-memory store holds before it refuses new ones.
DEFAULT_MAX_KEYS = 1_000_000


class NonceVerdict(enum.Enum):
    """Outcome of :meth:`NonceStore.check_and_store`."""

    ACCEPTED = "accepted"  #: new and inside the rules; now stored
    STALE = "stale"  #: older than the freshness window (``oldest_allowed``)
    NOT_NEWER = "not_newer"  #: already accepted for this key, or below the key's replay window
    FULL = "full"  #: a new key, and the store holds as many keys as it may


@runtime_checkable
class NonceStore(Protocol):
    """Where accepted nonces live; one store per axon, shared by every transport."""

    async def check_and_store(self, key: str, nonce: int, oldest_allowed: int | None) -> NonceVerdict:
        """Apply the nonce rules to ``(key, nonce)`` and store it when accepted, atomically."""
        ...  # pragma: no cover

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...  # pragma: no cover


def check_window_settings(replay_window: int, replay_span_ns: int) -> None:
    """Raise ``ValueError`` for a window no store can keep."""
    if isinstance(replay_window, bool) or not isinstance(replay_window, int) or replay_window < 0:
        raise ValueError("replay_window must be an int >= 0 (0 is the legacy strictly-greater rule)")
    if isinstance(replay_span_ns, bool) or not isinstance(replay_span_ns, int) or replay_span_ns < 0:
        raise ValueError("replay_span_ns must be an int >= 0")


class _Entry:
    """One key's state: when it last accepted a nonce, and its window (ascending)."""

    __slots__ = ("accepted_at", "seen")

    def __init__(self, accepted_at: int, nonce: int) -> None:
        self.accepted_at = accepted_at
        self.seen = [nonce]


class InMemoryNonceStore:
    """The embedded default: a bounded dict in one process (not shared between processes).

    ``retention_ns`` must be at least the longest freshness window the verifier uses
    plus how far ahead of the clock it lets a nonce be.
    """

    def __init__(
        self,
        retention_ns: int,
        *,
        replay_window: int = DEFAULT_REPLAY_WINDOW,
        replay_span_ns: int = DEFAULT_REPLAY_SPAN_NS,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if retention_ns <= 0:
            raise ValueError("retention_ns must be positive")
        check_window_settings(replay_window, replay_span_ns)
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self.retention_ns = retention_ns
        self.replay_window = replay_window
        self.replay_span_ns = replay_span_ns
        self.max_keys = max_keys
        # Ordered by last acceptance, so the entries to evict first sit at the front.
        self.entries: OrderedDict[str, _Entry] = OrderedDict()

    async def check_and_store(self, key: str, nonce: int, oldest_allowed: int | None) -> NonceVerdict:
        return self.check_and_store_now(key, nonce, oldest_allowed)

    def check_and_store_now(self, key: str, nonce: int, oldest_allowed: int | None) -> NonceVerdict:
        """Synchronous form (no await between check and store, so it is atomic in a loop)."""
        now = time.time_ns()
        entries = self.entries
        entry = entries.get(key)
        if entry is None:
            if oldest_allowed is not None and nonce <= oldest_allowed:
                return NonceVerdict.STALE
            self._evict(now - self.retention_ns)
            if len(entries) >= self.max_keys:
                return NonceVerdict.FULL
            entries[key] = _Entry(now, nonce)
            return NonceVerdict.ACCEPTED
        seen = entry.seen
        newest = seen[-1]
        if nonce > newest:
            # Drop what the new newest leaves outside its span (the span's floor itself stays
            # acceptable, so it stays remembered), then keep the count.
            del seen[: bisect.bisect_left(seen, nonce - self.replay_span_ns)]
            seen.append(nonce)
        else:
            verdict = self._below_newest(seen, newest, nonce, oldest_allowed)
            if verdict is not None:
                return verdict
            bisect.insort(seen, nonce)
        if len(seen) > self.replay_window + 1:
            del seen[0]
        entry.accepted_at = now
        entries.move_to_end(key)
        self._evict(now - self.retention_ns)
        return NonceVerdict.ACCEPTED

    def _below_newest(
        self, seen: list[int], newest: int, nonce: int, oldest_allowed: int | None
    ) -> NonceVerdict | None:
        """Why a nonce at or below the newest is refused, or None if it is accepted."""
        if newest - nonce > self.replay_span_ns:
            return NonceVerdict.NOT_NEWER
        if len(seen) > self.replay_window and nonce <= seen[0]:
            return NonceVerdict.NOT_NEWER  # the window is full and this is at or below its floor
        i = bisect.bisect_left(seen, nonce)
        if i < len(seen) and seen[i] == nonce:
            return NonceVerdict.NOT_NEWER  # an exact replay
        if oldest_allowed is not None and nonce <= oldest_allowed:
            return NonceVerdict.STALE
        return None

    def _evict(self, horizon: int) -> None:
        entries = self.entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.accepted_at >= horizon:
                return
            del entries[key]

    def __len__(self) -> int:
        return len(self.entries)

    async def close(self) -> None:
        self.entries.clear()


#: ``--axon.nonce_store`` values that select the in-memory store.
MEMORY_STORE_NAMES = ("", "memory")

#: URL schemes of a store on Redis: one server, a Sentinel-watched primary, a Cluster (:mod:`axon_grpc.auth.redis_ha`).
REDIS_URL_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
