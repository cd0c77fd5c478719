"""The bounded in-memory nonce store and the legacy nonce rules."""

from __future__ import annotations

import time

from axon_grpc.nonces import InMemoryNonceStore, NonceVerdict

WINDOW = 10 * 10**9


def test_first_nonce_must_be_fresh_later_ones_strictly_greater() -> None:
    store = InMemoryNonceStore(retention_ns=WINDOW)
    now = time.time_ns()
    assert store.check_and_store_now("k", now - 2 * WINDOW, now - WINDOW) is NonceVerdict.STALE
    assert "k" not in store.nonces  # refused nonces are not stored
    assert store.check_and_store_now("k", now, now - WINDOW) is NonceVerdict.ACCEPTED
    assert store.check_and_store_now("k", now, now - WINDOW) is NonceVerdict.NOT_NEWER
    assert store.check_and_store_now("k", now - 1, None) is NonceVerdict.NOT_NEWER
    assert store.check_and_store_now("k", now + 1, now - WINDOW) is NonceVerdict.ACCEPTED
    assert store.nonces["k"] == now + 1


def test_store_stays_bounded_and_eviction_reopens_no_replay() -> None:
    store = InMemoryNonceStore(retention_ns=WINDOW)
    now = time.time_ns()
    old = now - WINDOW - 10**9
    store.nonces["old-key"] = old  # accepted long ago
    for i in range(1000):
        assert store.check_and_store_now(f"uuid-{i}", now + i, now - WINDOW) is NonceVerdict.ACCEPTED
    assert "old-key" not in store.nonces  # evicted: older than the retention
    assert len(store) == 1000
    # Replaying the evicted nonce: it is first-seen again, but older than any allowed window.
    assert store.check_and_store_now("old-key", old, now - WINDOW) is NonceVerdict.STALE


async def test_async_interface() -> None:
    store = InMemoryNonceStore(retention_ns=WINDOW)
    now = time.time_ns()
    assert await store.check_and_store("a", now, now - WINDOW) is NonceVerdict.ACCEPTED
    assert await store.check_and_store("a", now, now - WINDOW) is NonceVerdict.NOT_NEWER
    await store.close()
    assert len(store) == 0
