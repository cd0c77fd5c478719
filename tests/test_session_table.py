"""The session table's parts against plain models: the counter window (RFC 6479 style) against a
set of every accepted counter, the token buckets, and the bounds of the table."""

from __future__ import annotations

import random

import pytest

from axon_grpc.auth.session_table import CounterWindow, OpenRate, SessionPolicy, SessionTable, TableFull, TokenBucket


@pytest.mark.parametrize("seed", range(5))
def test_the_counter_window_accepts_each_counter_once_within_its_span(seed: int) -> None:
    rng = random.Random(seed)
    size = 64
    window = CounterWindow(size)
    accepted: set[int] = set()
    highest = 0
    for _ in range(5000):
        counter = max(1, highest + rng.choice((rng.randint(-80, 3), rng.randint(1, 200))))
        if counter > highest:
            expected = None
        elif highest - counter > size:
            expected = "below"
        else:
            expected = "used" if counter in accepted else None
        assert window.accept(counter) == expected, (counter, highest)
        if expected is None:
            accepted.add(counter)
            highest = max(highest, counter)
    assert window.highest == highest


def test_token_buckets_refill_at_their_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4) is False and bucket.take(0.5) is True  # one token every 0.5 s
    rate = OpenRate(SessionPolicy(open_rate_per_address=1.0, open_burst_per_address=1, addresses_tracked=2))
    assert rate.take("a", 0.0) and not rate.take("a", 0.1) and rate.take("b", 0.1)
    assert rate.take("c", 0.1) and list(rate.by_address) == ["b", "c"]  # the least recent forgotten


def test_the_table_drops_expired_sessions_first_and_is_bounded() -> None:
    table = SessionTable(SessionPolicy(lifetime_s=10, total=2, per_address=5, per_hotkey=5), worker="abcd0123")
    first = table.add("hk1", b"k", "ip", table.new_id(), now=0.0)
    table.add("hk2", b"k", "ip", table.new_id(), now=5.0)
    assert first.id.startswith("abcd0123-") and len(first.id) == 41
    with pytest.raises(TableFull, match="Too many sessions"):
        table.add("hk3", b"k", "ip", table.new_id(), now=9.0)
    table.add("hk3", b"k", "ip", table.new_id(), now=10.0)  # the first expired: its place is free
    assert table.get(first.id) is None and table.evicted == {"hotkey_limit": 0, "expired": 1}
    assert len(table) == 2 and table.by_address == {"ip": 2} and set(table.by_hotkey) == {"hk2", "hk3"}
