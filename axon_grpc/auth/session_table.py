"""The axon's live sessions, bounded, and the rate of opens: the state behind ``axon-session/1``.

Sessions live in the memory of the worker that accepted them (docs/SESSIONS.md says why not
in Redis). Everything here is bounded: sessions per caller hotkey (an open past the bound
evicts that hotkey's least recently used session), per caller address and in total (an
open past those is refused); expired sessions are dropped first. Sessions are kept in the
order they were opened, which is the order they expire in (one lifetime for all), so
dropping the expired ones costs only what is dropped.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass

#: Bounds of a session's counters: the highest accepted and this many below it are remembered.
DEFAULT_WINDOW = 1024


@dataclass(frozen=True)
class SessionPolicy:
    """How long sessions live and how many there may be (docs/SESSIONS.md, "Settings")."""

    lifetime_s: int = 600  #: a session's life from its open
    max_calls: int = 1_000_000  #: the highest counter a session accepts
    window: int = DEFAULT_WINDOW  #: counters remembered below the highest accepted
    per_hotkey: int = 16  #: live sessions of one caller hotkey (past it: its LRU one is evicted)
    per_address: int = 256  #: live sessions opened from one address (past it: refused)
    total: int = 16_384  #: live sessions in all (past it, once the expired are dropped: refused)
    open_rate: float = 100.0  #: opens a second over all callers (token bucket)
    open_burst: int = 200
    open_rate_per_address: float = 5.0  #: opens a second from one address
    open_burst_per_address: int = 20
    addresses_tracked: int = 4096  #: addresses whose open rate is remembered (LRU)
    open_max_age_s: float = 10.0  #: how old an open's nonce may be
    open_max_future_s: float = 30.0  #: how far ahead of the axon's clock an open's nonce may be
    #: opens from one address whose message is still awaited (each holds a call slot until it
    #: comes, at most ``OPEN_READ_S``): past it an open is refused before it is read
    opens_reading_per_address: int = 4


class CounterWindow:
    """A session's accepted counters, in the manner of RFC 6479: the highest accepted and a bitmap
    of the ``size`` below it (bit ``i``: counter ``highest - i`` accepted)."""

    __slots__ = ("bits", "highest", "size")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        self.size = size
        self.highest = 0
        self.bits = 0

    def problem(self, counter: int) -> str | None:
        """Why ``counter`` cannot be accepted (``used``, ``below``), or None; stores nothing."""
        highest = self.highest
        if counter > highest:
            return None
        behind = highest - counter
        if behind > self.size:
            return "below"
        return "used" if (self.bits >> behind) & 1 else None

    def accept(self, counter: int) -> str | None:
        """Accept ``counter`` if it may be; else why not (as :meth:`problem`)."""
        problem = self.problem(counter)
        if problem is not None:
            return problem
        if counter > self.highest:
            shift = counter - self.highest
            self.bits = ((self.bits << shift) | 1) & ((2 << self.size) - 1) if shift <= self.size else 1
            self.highest = counter
        else:
            self.bits |= 1 << (self.highest - counter)
        return None


class Session:
    """One live session: whose it is, its key, its counters, when it ends."""

    __slots__ = ("address", "counters", "expires", "hotkey", "id", "key", "last_used", "max_calls")

    def __init__(self, session_id: str, hotkey: str, key: bytes, address: str, expires: float, policy: SessionPolicy):
        self.id = session_id
        self.hotkey = hotkey
        self.key = key
        self.address = address
        self.expires = expires
        self.max_calls = policy.max_calls
        self.counters = CounterWindow(policy.window)
        self.last_used = time.monotonic()


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` held."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.stamp = float(burst), now

    def take(self, now: float) -> bool:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class OpenRate:
    """The rate of opens: one bucket per address (the ``addresses_tracked`` most recent) and one
    for all."""

    def __init__(self, policy: SessionPolicy) -> None:
        self.policy = policy
        now = time.monotonic()
        self.all = TokenBucket(policy.open_rate, policy.open_burst, now)
        self.by_address: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, address: str, now: float | None = None) -> bool:
        """Whether an open from ``address`` may go on now (a token of its own and one of all)."""
        now = time.monotonic() if now is None else now
        policy = self.policy
        bucket = self.by_address.get(address)
        if bucket is None:
            bucket = self.by_address[address] = TokenBucket(
                policy.open_rate_per_address, policy.open_burst_per_address, now
            )
            if len(self.by_address) > policy.addresses_tracked:
                self.by_address.popitem(last=False)
        else:
            self.by_address.move_to_end(address)
        return bucket.take(now) and self.all.take(now)


class TableFull(Exception):
    """No room for a session: ``per_address`` or ``total`` (the message says which)."""


class SessionTable:
    """The live sessions of this worker, by id; ``worker`` is the tag their ids start with."""

    def __init__(self, policy: SessionPolicy, worker: str | None = None) -> None:
        self.policy = policy
        #: 8 hex digits, new at each start: a session id says which worker (and run) holds it.
        self.worker = worker if worker is not None else os.urandom(4).hex()
        self.sessions: OrderedDict[str, Session] = OrderedDict()  # in the order opened = of expiry
        self.by_hotkey: dict[str, list[Session]] = {}
        self.by_address: dict[str, int] = {}
        #: Sessions dropped before their end, by cause (``hotkey_limit``, ``expired``).
        self.evicted: dict[str, int] = {"hotkey_limit": 0, "expired": 0}
        #: What of ``evicted`` the metrics have counted already.
        self.evictions_reported: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.sessions)

    def new_id(self) -> str:
        return f"{self.worker}-{os.urandom(16).hex()}"

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def drop(self, session: Session, cause: str | None = None) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        own = self.by_hotkey.get(session.hotkey)
        if own is not None:
            own.remove(session)
            if not own:
                del self.by_hotkey[session.hotkey]
        count = self.by_address.get(session.address, 1) - 1
        if count > 0:
            self.by_address[session.address] = count
        else:
            self.by_address.pop(session.address, None)
        if cause is not None:
            self.evicted[cause] += 1

    def drop_expired(self, now: float) -> None:
        sessions = self.sessions
        while sessions:
            first = next(iter(sessions.values()))
            if first.expires > now:
                return
            self.drop(first, "expired")

    def add(self, hotkey: str, key: bytes, address: str, session_id: str, now: float | None = None) -> Session:
        """Hold a new session (``session_id`` from :meth:`new_id`); raises :class:`TableFull`."""
        now = time.monotonic() if now is None else now
        policy = self.policy
        self.drop_expired(now)
        if self.by_address.get(address, 0) >= policy.per_address:
            raise TableFull("Too many sessions from this address")
        own = self.by_hotkey.get(hotkey, [])
        if len(own) >= policy.per_hotkey:
            self.drop(min(own, key=lambda s: s.last_used), "hotkey_limit")
        elif len(self.sessions) >= policy.total:
            raise TableFull("Too many sessions")
        session = Session(session_id, hotkey, key, address, now + policy.lifetime_s, policy)
        self.sessions[session_id] = session
        self.by_hotkey.setdefault(hotkey, []).append(session)
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return session
