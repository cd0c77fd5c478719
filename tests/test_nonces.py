"""The bounded in-memory nonce store: the sliding replay window, freshness, eviction."""

from __future__ import annotations

import random
import time

import pytest

from axon_grpc.auth.nonces import DEFAULT_REPLAY_WINDOW, InMemoryNonceStore, NonceVerdict

from .support import check_concurrent_rounds

ACCEPTED, STALE, NOT_NEWER, FULL = NonceVerdict.ACCEPTED, NonceVerdict.STALE, NonceVerdict.NOT_NEWER, NonceVerdict.FULL
WINDOW = 10 * 10**9


def test_first_nonce_must_be_fresh_then_each_nonce_is_accepted_once() -> None:
    store = InMemoryNonceStore(retention_ns=WINDOW)
    now = time.time_ns()
    assert store.check_and_store_now("k", now - 2 * WINDOW, now - WINDOW) is STALE
    assert "k" not in store.entries  # refused nonces are not stored
    assert store.check_and_store_now("k", now, now - WINDOW) is ACCEPTED
    assert store.check_and_store_now("k", now, now - WINDOW) is NOT_NEWER  # a replay
    assert store.check_and_store_now("k", now - 1, None) is ACCEPTED  # overtaken, not seen before
    assert store.check_and_store_now("k", now - 1, None) is NOT_NEWER
    assert store.check_and_store_now("k", now + 1, now - WINDOW) is ACCEPTED
    assert store.entries["k"].seen == [now - 1, now, now + 1]
    # Below the newest, the freshness rule still holds.
    assert store.check_and_store_now("k", now - 2, now - 1) is STALE


def test_replay_window_zero_is_the_legacy_strictly_greater_rule() -> None:
    store = InMemoryNonceStore(retention_ns=WINDOW, replay_window=0)
    now = time.time_ns()
    assert store.check_and_store_now("k", now, now - WINDOW) is ACCEPTED
    assert store.check_and_store_now("k", now, None) is NOT_NEWER
    assert store.check_and_store_now("k", now - 1, None) is NOT_NEWER
    assert store.check_and_store_now("k", now + 5, None) is ACCEPTED
    assert store.check_and_store_now("k", now + 3, None) is NOT_NEWER
    assert store.entries["k"].seen == [now + 5]


def test_window_is_bounded_by_count() -> None:
    store = InMemoryNonceStore(retention_ns=WINDOW, replay_window=4)
    base = time.time_ns()
    for i in range(0, 20, 2):  # even nonces, in order
        assert store.check_and_store_now("k", base + i, None) is ACCEPTED
    assert store.entries["k"].seen == [base + 10, base + 12, base + 14, base + 16, base + 18]
    # Nonces overtaken by at most 4 newer accepted ones are accepted once.
    for i in (17, 15):
        assert store.check_and_store_now("k", base + i, None) is ACCEPTED
        assert store.check_and_store_now("k", base + i, None) is NOT_NEWER
    assert store.entries["k"].seen == [base + 14, base + 15, base + 16, base + 17, base + 18]
    assert store.check_and_store_now("k", base + 13, None) is NOT_NEWER  # overtaken by five
    # Anything at or below the oldest remembered nonce is refused: it may have been accepted.
    floor = store.entries["k"].seen[0]
    assert len(store.entries["k"].seen) == 5
    for nonce in range(base, floor + 1):
        assert store.check_and_store_now("k", nonce, None) is NOT_NEWER


def test_window_is_bounded_by_span() -> None:
    span = 1000
    store = InMemoryNonceStore(retention_ns=WINDOW, replay_span_ns=span)
    base = time.time_ns()
    assert store.check_and_store_now("k", base, None) is ACCEPTED
    assert store.check_and_store_now("k", base + span, None) is ACCEPTED
    assert store.check_and_store_now("k", base - 1, None) is NOT_NEWER  # more than a span below
    assert store.check_and_store_now("k", base, None) is NOT_NEWER  # the span's floor: remembered
    assert store.check_and_store_now("k", base + 1, None) is ACCEPTED
    assert store.check_and_store_now("k", base + 3 * span, None) is ACCEPTED
    assert store.entries["k"].seen == [base + 3 * span]  # the rest fell out of the span
    assert store.check_and_store_now("k", base + span, None) is NOT_NEWER


def test_windowed_verdicts_match_a_record_of_everything_accepted() -> None:
    """Against an unbounded model: never a replay, and refusals only outside the window."""
    rng = random.Random(16)
    window, span = 8, 500
    store = InMemoryNonceStore(retention_ns=WINDOW, replay_window=window, replay_span_ns=span)
    base = time.time_ns()
    accepted: set[int] = set()
    for _ in range(5000):
        nonce = base + rng.randrange(0, 4000)
        verdict = store.check_and_store_now("k", nonce, None)
        if nonce in accepted:
            assert verdict is NOT_NEWER
            continue
        newest = max(accepted, default=nonce)
        newer = sum(1 for n in accepted if n > nonce)
        if nonce > newest or (newest - nonce <= span and newer <= window):
            assert verdict is ACCEPTED, (nonce - base, newest - base, newer)
        if verdict is ACCEPTED:
            accepted.add(nonce)
        assert len(store.entries["k"].seen) <= window + 1


async def test_concurrent_out_of_order_nonces_are_never_refused() -> None:
    """One caller, many requests at once; a request is overtaken by at most concurrency - 1 others."""
    store = InMemoryNonceStore(retention_ns=WINDOW)
    await check_concurrent_rounds(store, rounds=50, concurrency=DEFAULT_REPLAY_WINDOW, seed=3)


def test_keys_are_evicted_after_retention_and_eviction_reopens_no_replay(monkeypatch) -> None:
    store = InMemoryNonceStore(retention_ns=WINDOW)
    now = time.time_ns()
    assert store.check_and_store_now("old-key", now, now - WINDOW) is ACCEPTED
    later = now + WINDOW + 10**9
    monkeypatch.setattr(time, "time_ns", lambda: later)
    for i in range(1000):
        assert store.check_and_store_now(f"uuid-{i}", later + i, later - WINDOW) is ACCEPTED
    assert "old-key" not in store.entries  # evicted: not used for longer than the retention
    assert len(store) == 1000
    # Replaying the evicted nonce: it is first-seen again, but older than any allowed window.
    assert store.check_and_store_now("old-key", now, later - WINDOW) is STALE


def test_a_nonce_far_below_the_clock_is_not_evicted_on_arrival() -> None:
    """A pre-7.2 dendrite's ``time.monotonic_ns()`` nonce is tiny; its entry must stay."""
    store = InMemoryNonceStore(retention_ns=WINDOW)
    nonce = time.monotonic_ns()
    assert store.check_and_store_now("legacy:uuid", nonce, None) is ACCEPTED
    assert store.check_and_store_now("other:uuid", time.time_ns(), None) is ACCEPTED
    assert "legacy:uuid" in store.entries
    assert store.check_and_store_now("legacy:uuid", nonce, None) is NOT_NEWER


def test_new_keys_are_refused_when_full_never_forgetting_others(monkeypatch) -> None:
    store = InMemoryNonceStore(retention_ns=WINDOW, max_keys=3)
    now = time.time_ns()
    for key in "abc":
        assert store.check_and_store_now(key, now, None) is ACCEPTED
    assert store.check_and_store_now("d", now, None) is FULL
    assert store.check_and_store_now("a", now + 1, None) is ACCEPTED  # known keys carry on
    assert store.check_and_store_now("a", now, None) is NOT_NEWER
    monkeypatch.setattr(time, "time_ns", lambda: now + 2 * WINDOW)
    assert store.check_and_store_now("d", now + WINDOW, None) is ACCEPTED  # room again once evicted


def test_bad_settings_are_refused() -> None:
    for kwargs in ({"replay_window": -1}, {"replay_span_ns": -1}, {"max_keys": 0}, {"replay_window": 1.5}):
        with pytest.raises(ValueError):
            InMemoryNonceStore(WINDOW, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        InMemoryNonceStore(0)


async def test_async_interface() -> None:
    store = InMemoryNonceStore(retention_ns=WINDOW)
    now = time.time_ns()
    assert await store.check_and_store("a", now, now - WINDOW) is ACCEPTED
    assert await store.check_and_store("a", now, now - WINDOW) is NOT_NEWER
    await store.close()
    assert len(store) == 0
