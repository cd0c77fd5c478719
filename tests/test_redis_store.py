"""The Redis nonce store against a real redis-server: the Lua rules, expiry, sharing
between axons over real gRPC, and failing closed while Redis is down."""

from __future__ import annotations

import asyncio
import random
import time

import grpc
import pytest
from redis.asyncio import Redis

from axon_grpc import Axon, Dendrite, InMemoryNonceStore, KeypairWallet, VerifyPolicy
from axon_grpc.auth.btauth import sign_headers
from axon_grpc.auth.nonces import NonceStore, NonceVerdict
from axon_grpc.auth.redis_store import RedisNonceStore
from axon_grpc.errors import ServiceUnavailable
from axon_grpc.testing import build_axon

from .redis_support import RedisServer
from .support import Dummy, RawCaller, check_concurrent_rounds, dummy_forward, refused_port

ACCEPTED, STALE, NOT_NEWER = NonceVerdict.ACCEPTED, NonceVerdict.STALE, NonceVerdict.NOT_NEWER
RETENTION = 60 * 10**9
BODY = b"\x08\x07"  # Dummy(input=7)


@pytest.fixture
async def store(redis_server: RedisServer, request: pytest.FixtureRequest):
    namespace = f"test-{request.node.name}-{time.time_ns()}"
    # The verdicts are what these tests check; the time bound (0.5 s by default, which 64
    # concurrent first connections can pass on a loaded machine) has tests of its own below.
    s = RedisNonceStore(redis_server.url, retention_ns=RETENTION, namespace=namespace, timeout_s=5.0)
    yield s
    await s.close()


async def test_is_a_nonce_store(store: RedisNonceStore) -> None:
    assert isinstance(store, NonceStore)
    assert await store.check_and_store("k", time.time_ns(), None) is ACCEPTED


@pytest.fixture
async def legacy_store(redis_server: RedisServer, request: pytest.FixtureRequest):
    """A store with ``replay_window=0``: the legacy strictly-greater rule."""
    namespace = f"test-{request.node.name}-{time.time_ns()}"
    s = RedisNonceStore(redis_server.url, retention_ns=RETENTION, namespace=namespace, replay_window=0)
    yield s
    await s.close()


async def test_strings_compare_exactly_around_1_8e18(legacy_store: RedisNonceStore) -> None:
    store = legacy_store
    # 1.8e18 is far past 2**53: as Lua doubles these nonces would be equal.
    base = 1_800_000_000_000_000_000
    assert float(base + 1) == float(base)
    assert await store.check_and_store("a", base + 1, None) is ACCEPTED
    assert await store.check_and_store("a", base, None) is NOT_NEWER
    assert await store.check_and_store("a", base + 1, None) is NOT_NEWER
    assert await store.check_and_store("a", base + 2, None) is ACCEPTED
    # The freshness bound, a digit apart.
    assert await store.check_and_store("b", base + 5, base + 5) is STALE
    assert await store.check_and_store("b", base + 4, base + 5) is STALE
    assert await store.check_and_store("b", base + 6, base + 5) is ACCEPTED
    # Length decides before the characters do: "999..." (18 digits) < "1000..." (19).
    assert await store.check_and_store("c", 999_999_999_999_999_999, None) is ACCEPTED
    assert await store.check_and_store("c", 10**18, None) is ACCEPTED
    assert await store.check_and_store("c", 999_999_999_999_999_999, None) is NOT_NEWER
    # Signs (a legacy dendrite may send anything that parses as an int).
    assert await store.check_and_store("d", -5, None) is ACCEPTED
    assert await store.check_and_store("d", -6, None) is NOT_NEWER
    assert await store.check_and_store("d", -4, None) is ACCEPTED
    assert await store.check_and_store("d", 0, None) is ACCEPTED
    assert await store.check_and_store("e", -1, 0) is STALE


async def test_the_window_is_exact_around_1_8e18(store: RedisNonceStore) -> None:
    base = 1_800_000_000_000_000_000
    span = store.replay_span_ns
    assert await store.check_and_store("a", base + 1, None) is ACCEPTED
    assert await store.check_and_store("a", base, None) is ACCEPTED  # overtaken by one
    assert await store.check_and_store("a", base, None) is NOT_NEWER
    assert await store.check_and_store("a", base + 1, None) is NOT_NEWER
    # The span's edge, a nanosecond apart.
    assert await store.check_and_store("a", base + span, None) is ACCEPTED
    assert await store.check_and_store("a", base - 1, None) is NOT_NEWER
    assert await store.check_and_store("a", base, None) is NOT_NEWER  # at the edge: remembered
    assert await store.check_and_store("a", base + 2, None) is ACCEPTED
    # Digits of different lengths and signs order numerically.
    assert await store.check_and_store("c", 10**18, None) is ACCEPTED
    assert await store.check_and_store("c", 999_999_999_999_999_999, None) is ACCEPTED
    assert await store.check_and_store("c", 999_999_999_999_999_999, None) is NOT_NEWER
    assert await store.check_and_store("d", 5, None) is ACCEPTED
    assert await store.check_and_store("d", -5, None) is ACCEPTED
    assert await store.check_and_store("d", -5, None) is NOT_NEWER
    assert await store.check_and_store("d", 5, None) is NOT_NEWER


@pytest.mark.parametrize("window, span", [(0, 100), (3, 100), (8, 25), (64, 60 * 10**9)])
async def test_same_verdicts_as_the_in_memory_store(redis_server: RedisServer, window: int, span: int) -> None:
    store = RedisNonceStore(
        redis_server.url,
        retention_ns=RETENTION,
        namespace=f"same-{window}-{time.time_ns()}",
        replay_window=window,
        replay_span_ns=span,
    )
    reference = InMemoryNonceStore(RETENTION, replay_window=window, replay_span_ns=span)
    rng = random.Random(8 + window)
    base = time.time_ns()
    try:
        for _ in range(600):
            key = f"k{rng.randrange(4)}"
            nonce = base + rng.randrange(-60, 60)
            oldest = None if rng.random() < 0.5 else base + rng.randrange(-80, 0)
            expected = reference.check_and_store_now(key, nonce, oldest)
            assert await store.check_and_store(key, nonce, oldest) is expected, (key, nonce - base)
    finally:
        await store.close()


async def test_window_memory_is_bounded(store: RedisNonceStore, redis_server: RedisServer) -> None:
    base = time.time_ns()
    for i in range(3 * store.replay_window):
        assert await store.check_and_store("k", base + i, None) is ACCEPTED
    client = Redis.from_url(redis_server.url)
    try:
        kept = (await client.get(store.redis_key("k"))).split(b",")
    finally:
        await client.aclose()
    assert [int(n) for n in kept] == [base + i for i in range(2 * store.replay_window - 1, 3 * store.replay_window)]


async def test_concurrent_out_of_order_nonces_are_never_refused(store: RedisNonceStore) -> None:
    """Many rounds of concurrent checks of one key: taken in one order, checked in another."""
    await check_concurrent_rounds(store, rounds=20, concurrency=store.replay_window, seed=5)


async def test_keys_are_namespaced_and_expire(redis_server: RedisServer) -> None:
    short = RedisNonceStore(redis_server.url, retention_ns=400_000_000, namespace="5Expiring")
    other = RedisNonceStore(redis_server.url, retention_ns=400_000_000, namespace="5Other")
    client = Redis.from_url(redis_server.url)
    try:
        nonce = time.time_ns()
        assert await short.check_and_store("hk:uuid", nonce, None) is ACCEPTED
        # Another axon hotkey sharing the Redis has its own replay state.
        assert await other.check_and_store("hk:uuid", nonce, None) is ACCEPTED
        key = "axon-grpc:5Expiring:n:hk:uuid"
        assert await client.get(key) == str(nonce).encode()
        assert 0 < await client.pttl(key) <= 400
        await asyncio.sleep(0.6)
        assert await client.exists(key) == 0
        assert await client.exists("axon-grpc:5Other:n:hk:uuid") == 0
    finally:
        await client.aclose()
        await short.close()
        await other.close()


async def test_a_flushed_script_cache_is_reloaded(store: RedisNonceStore, redis_server: RedisServer) -> None:
    assert await store.check_and_store("k", 10, None) is ACCEPTED
    client = Redis.from_url(redis_server.url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    assert await store.check_and_store("k", 11, None) is ACCEPTED  # NOSCRIPT -> EVAL
    assert await store.check_and_store("k", 11, None) is NOT_NEWER
    assert await store.check_and_store("k", 10, None) is NOT_NEWER


async def test_unreachable_redis_fails_closed_and_fast() -> None:
    with refused_port() as port:
        store = RedisNonceStore(f"redis://127.0.0.1:{port}/0", retention_ns=RETENTION, timeout_s=0.3)
        start = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="nonce store unavailable"):
            await store.check_and_store("k", time.time_ns(), None)
    assert time.monotonic() - start < 2.0  # refused, not hung
    await store.close()


async def test_slow_redis_fails_closed_within_the_bound(make_redis_server) -> None:
    server = make_redis_server()
    store = RedisNonceStore(server.url, retention_ns=RETENTION, timeout_s=0.2)
    client = Redis.from_url(server.url)
    try:
        assert await store.check_and_store("k", 1, None) is ACCEPTED
        await client.execute_command("CLIENT", "PAUSE", "4000", "ALL")  # every command now waits 4 s
        start = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await store.check_and_store("k", 2, None)
        assert time.monotonic() - start < 3.0  # gave up (at 0.2 s) long before the pause ended
        await asyncio.sleep(start + 4.5 - time.monotonic())
        assert await store.check_and_store("k", 3, None) is ACCEPTED
    finally:
        await client.aclose()
        await store.close()


def test_bad_urls_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="not a Redis URL"):
        RedisNonceStore("http://127.0.0.1:6379", retention_ns=RETENTION)
    with pytest.raises(ValueError):
        RedisNonceStore("redis://127.0.0.1:6379/0", retention_ns=0)
    with pytest.raises(AssertionError, match="nonce_store"):
        build_axon(nonce_store="memcached://x")
    with pytest.raises(AssertionError, match="nonce_store"):
        Axon.check_config(Axon.config(args=["--axon.nonce_store", "memcached://x"]))
    assert isinstance(build_axon(nonce_store="memory").nonce_store, InMemoryNonceStore)
    assert "secret" not in repr(RedisNonceStore("redis://:secret@127.0.0.1:6379/0", retention_ns=RETENTION))


# -- two axons ("workers") sharing one store, over real gRPC ---------------------------------------
@pytest.fixture
async def two_axons(redis_server: RedisServer):
    wallet = KeypairWallet.generate()
    hotkey = wallet.hotkey.ss58_address
    store = RedisNonceStore(redis_server.url, retention_ns=VerifyPolicy().retention_ns, namespace=hotkey)
    axons = [build_axon(dummy_forward, wallet=wallet, nonce_store=store) for _ in range(2)]
    for axon in axons:
        await axon.start_async()
    first = RawCaller(f"127.0.0.1:{axons[0].port}", hotkey)
    second = RawCaller(f"127.0.0.1:{axons[1].port}", hotkey, keypair=first.keypair)
    try:
        yield axons, first, second
    finally:
        await first.close()
        await second.close()
        for axon in axons:
            await axon.stop_async(grace=None)
        await store.close()


async def test_a_replay_to_the_other_worker_is_refused(two_axons) -> None:
    axons, first, second = two_axons
    assert axons[0].port != axons[1].port
    metadata = first.metadata(BODY)
    status, response, _, _ = await first.call("Dummy", BODY, metadata)
    assert status == grpc.StatusCode.OK and response == b"\x08\x07\x10\x0e"
    status, response, details, trailing = await second.call("Dummy", BODY, metadata)
    assert status == grpc.StatusCode.UNAUTHENTICATED and response is None
    assert "a newer one was last processed" in details
    assert trailing["bt_header_axon_uuid"] == axons[1].uuid
    # And the same the other way round, for a fresh request.
    metadata = first.metadata(BODY)
    assert (await second.call("Dummy", BODY, metadata))[0] == grpc.StatusCode.OK
    assert (await first.call("Dummy", BODY, metadata))[0] == grpc.StatusCode.UNAUTHENTICATED


async def test_a_btauth_replay_to_the_other_worker_is_refused(two_axons) -> None:
    axons, first, second = two_axons
    headers = sign_headers(
        first.keypair,
        method="POST",
        path="/axon.v1.Axon/Dummy",
        body=BODY,
        receiver=axons[0].wallet.hotkey.ss58_address,
    )
    metadata = [("name", "Dummy"), ("timeout", "12.0"), *headers.items()]
    assert (await first.call("Dummy", BODY, metadata))[0] == grpc.StatusCode.OK
    status, _, details, _ = await second.call("Dummy", BODY, metadata)
    assert status == grpc.StatusCode.UNAUTHENTICATED and "already accepted" in details


async def test_concurrent_identical_requests_to_two_workers_one_wins(two_axons) -> None:
    _, first, second = two_axons
    for _ in range(50):
        metadata = first.metadata(BODY)
        results = await asyncio.gather(first.call("Dummy", BODY, metadata), second.call("Dummy", BODY, metadata))
        codes = sorted(r[0].name for r in results)
        assert codes == ["OK", "UNAUTHENTICATED"], codes


# -- Redis going away and coming back ---------------------------------------------------------------
async def test_redis_down_means_unavailable_and_service_resumes_after_restart(make_redis_server) -> None:
    server = make_redis_server()
    # A URL: the axon opens (and on stop closes) the store itself, namespaced by its hotkey.
    axon: Axon = build_axon(dummy_forward, nonce_store=server.url)
    assert isinstance(axon.nonce_store, RedisNonceStore) and axon.btauth_nonce_store is axon.nonce_store
    assert axon.nonce_store.namespace == axon.wallet.hotkey.ss58_address
    policy = VerifyPolicy()
    assert axon.nonce_store.retention_ns == max(policy.retention_ns, policy.btauth_retention_ns)
    await axon.start_async()
    caller = RawCaller(f"127.0.0.1:{axon.port}", axon.wallet.hotkey.ss58_address)
    try:
        accepted = caller.metadata(BODY)
        assert (await caller.call("Dummy", BODY, accepted))[0] == grpc.StatusCode.OK

        server.stop()
        for metadata in (caller.metadata(BODY), accepted):  # a new request, and a replay
            status, response, details, trailing = await caller.call("Dummy", BODY, metadata)
            assert status == grpc.StatusCode.UNAVAILABLE and response is None
            assert details == "nonce store unavailable"
            assert trailing["bt_header_axon_status_code"] == "503"
        # Checked before the forward: nothing ran, nothing was stored.

        server.start()  # same port, empty (no persistence)
        status, response, _, _ = await caller.call("Dummy", BODY, caller.metadata(BODY))
        assert status == grpc.StatusCode.OK and response == b"\x08\x07\x10\x0e"
        replay = caller.metadata(BODY)
        assert (await caller.call("Dummy", BODY, replay))[0] == grpc.StatusCode.OK
        assert (await caller.call("Dummy", BODY, replay))[0] == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await caller.close()
        await axon.stop_async(grace=None)
    assert not axon.nonce_store._clients  # closed with the axon


def test_an_axon_on_its_own_loop_thread_uses_and_closes_the_store(redis_server: RedisServer) -> None:
    axon = build_axon(dummy_forward, nonce_store=redis_server.url).start()
    dendrite = Dendrite()
    try:
        result = dendrite.query(axon.info(), Dummy(input=2), deserialize=False)
        assert result.dendrite.status_code == 200 and result.output == 4
        assert len(axon.nonce_store._clients) == 1  # created on the axon's loop, not here
    finally:
        dendrite.close_session()
        axon.stop()
    assert not axon.nonce_store._clients
