"""Legacy-scheme verification (axon_grpc.auth.legacy) and btauth's checks, without sockets:
caller-field bounds, one hotkey string per key, the replay window through
``verify_legacy``, and replays of pre-7.2 dendrites on both nonce stores."""

from __future__ import annotations

import asyncio
import random
import time
import uuid as uuid_lib
from typing import AsyncIterator

import pytest

from axon_grpc import Keypair, Synapse, TerminalInfo
from axon_grpc.auth.btauth import build_payload, sign_headers, verify_btauth
from axon_grpc.auth.legacy import (
    MAX_HOTKEY_CHARS,
    MAX_NONCE_DIGITS,
    MAX_UUID_CHARS,
    MAX_VERSION_DIGITS,
    PROTOCOL_VERSION,
    VerifyPolicy,
    check_caller_fields,
    request_message,
    verify_legacy,
)
from axon_grpc.auth.nonces import InMemoryNonceStore, NonceStore
from axon_grpc.errors import NotVerifiedException, ServiceUnavailable, SynapseParsingError

from .redis_support import RedisServer
from .test_keys import two_byte_alias

AXON = Keypair.generate()
PRE_7_2 = 7_001_000
REPLAYED = "Not Verified with error: Nonce is too old, a newer one was last processed"


def signed(
    keypair: Keypair,
    nonce: int,
    *,
    uuid: str = "u-1",
    version: int | None = PROTOCOL_VERSION,
    hotkey: str | None = None,
) -> Synapse:
    """A header-built synapse as a dendrite signs it (``hotkey`` may name the key otherwise)."""
    synapse = Synapse(computed_body_hash="ab" * 32, timeout=12.0)
    synapse.dendrite = TerminalInfo(hotkey=hotkey or keypair.ss58_address, nonce=nonce, uuid=uuid, version=version)
    synapse.dendrite.signature = keypair.sign_hex(request_message(synapse, AXON.ss58_address))
    return synapse


def replayed(synapse: Synapse, **changes: object) -> Synapse:
    """The same signed request, with unsigned terminal-info fields changed (the signature still holds)."""
    copy = synapse.model_copy(deep=True)
    for name, value in changes.items():
        setattr(copy.dendrite, name, value)
    return copy


async def verify(
    synapse: Synapse, store: NonceStore, policy: VerifyPolicy | None = None, crypto: str = "sr25519"
) -> None:
    await verify_legacy(synapse, AXON.ss58_address, store, policy or VerifyPolicy(), crypto)


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator:
    """Build a nonce store for a policy, as the axon does (in memory, or Redis shared by both schemes)."""
    stores: list[NonceStore] = []

    def make(policy: VerifyPolicy) -> NonceStore:
        if request.param == "memory":
            store: NonceStore = InMemoryNonceStore(policy.retention_ns)
        else:
            from axon_grpc.auth.redis_store import RedisNonceStore

            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisNonceStore(
                server.url,
                retention_ns=max(policy.retention_ns, policy.btauth_retention_ns),
                namespace=f"auth-{time.time_ns()}",
            )
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


# -- bounded caller-chosen strings ---------------------------------------------------------------


def test_caller_fields_at_their_bounds_pass() -> None:
    check_caller_fields(
        hotkey="5" * MAX_HOTKEY_CHARS,
        uuid="u" * MAX_UUID_CHARS,
        nonce=10**MAX_NONCE_DIGITS - 1,
        version=10**MAX_VERSION_DIGITS - 1,
    )
    check_caller_fields(nonce="9" * MAX_NONCE_DIGITS, version="-" + "9" * MAX_VERSION_DIGITS)
    check_caller_fields(nonce=-(10**MAX_NONCE_DIGITS - 1))
    check_caller_fields()  # nothing given, nothing checked
    assert MAX_HOTKEY_CHARS >= len(Keypair.generate().ss58_address)
    assert MAX_UUID_CHARS >= len(str(uuid_lib.uuid1()))
    assert MAX_NONCE_DIGITS >= len(str(time.time_ns())) and MAX_VERSION_DIGITS >= len(str(PROTOCOL_VERSION))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hotkey": "5" * (MAX_HOTKEY_CHARS + 1)}, f"The hotkey is longer than {MAX_HOTKEY_CHARS} characters"),
        ({"uuid": "u" * (MAX_UUID_CHARS + 1)}, f"The uuid is longer than {MAX_UUID_CHARS} characters"),
        ({"uuid": "u" * 31 * 1024}, f"The uuid is longer than {MAX_UUID_CHARS} characters"),
        ({"nonce": 10**MAX_NONCE_DIGITS}, f"The nonce has more than {MAX_NONCE_DIGITS} digits"),
        ({"nonce": -(10**400)}, f"The nonce has more than {MAX_NONCE_DIGITS} digits"),
        ({"nonce": "1" * 5000}, f"The nonce has more than {MAX_NONCE_DIGITS} digits"),
        ({"version": 10**MAX_VERSION_DIGITS}, f"The version has more than {MAX_VERSION_DIGITS} digits"),
    ],
)
def test_caller_fields_past_their_bounds_are_400(fields: dict, message: str) -> None:
    with pytest.raises(SynapseParsingError) as info:
        check_caller_fields(**fields)
    assert info.value.status_code == 400
    assert str(info.value) == f"Improperly formatted request. {message}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uuid", "u" * (MAX_UUID_CHARS + 1)),
        ("nonce", 10**MAX_NONCE_DIGITS),
        ("version", 10**MAX_VERSION_DIGITS),
        ("hotkey", "5" * (MAX_HOTKEY_CHARS + 1)),
    ],
)
async def test_verify_legacy_bounds_caller_fields_before_storing(field: str, value: object) -> None:
    store = InMemoryNonceStore(VerifyPolicy().retention_ns)
    caller = Keypair.generate()
    synapse = signed(caller, time.time_ns())
    setattr(synapse.dendrite, field, value)
    with pytest.raises(SynapseParsingError, match="Improperly formatted request"):
        await verify(synapse, store)
    assert len(store) == 0


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("x-bittensor-hotkey", "5" * 200, "The hotkey is longer than"),
        ("x-bittensor-nonce", "1" * 5000, "The nonce has more than"),
    ],
)
async def test_verify_btauth_bounds_caller_fields(header: str, value: str, message: str) -> None:
    store = InMemoryNonceStore(VerifyPolicy().btauth_retention_ns)
    headers = sign_headers(Keypair.generate(), method="POST", path="/p", body=b"", receiver=AXON.ss58_address)
    headers[header] = value
    with pytest.raises(SynapseParsingError, match=message):
        await verify_btauth(
            headers,
            b"",
            method="POST",
            path="/p",
            receiver=AXON.ss58_address,
            store=store,
            max_age_s=10,
            allowed_skew_s=2,
        )
    assert len(store) == 0


# -- one hotkey string per key -------------------------------------------------------------------


@pytest.mark.parametrize("crypto", ["sr25519", "ed25519"])
async def test_legacy_signature_under_a_second_address_string_is_refused(crypto: str) -> None:
    store = InMemoryNonceStore(VerifyPolicy().retention_ns)
    caller = Keypair.generate(crypto)
    alias = two_byte_alias(caller.public_key)
    banned = {caller.ss58_address}
    with pytest.raises(NotVerifiedException) as info:
        await verify(signed(caller, time.time_ns(), hotkey=alias), store, crypto=crypto)
    assert str(info.value).startswith("Not Verified with error: Invalid hotkey: invalid SS58 address: not canonical")
    assert len(store) == 0
    # Only the canonical string gets through, so a deny-list on that string holds.
    accepted = signed(caller, time.time_ns())
    await verify(accepted, store, crypto=crypto)
    assert accepted.dendrite.hotkey in banned


@pytest.mark.parametrize("crypto", ["sr25519", "ed25519"])
async def test_btauth_signature_under_a_second_address_string_is_refused(crypto: str) -> None:
    store = InMemoryNonceStore(VerifyPolicy().btauth_retention_ns)
    caller = Keypair.generate(crypto)
    alias = two_byte_alias(caller.public_key)
    nonce = time.time_ns()
    payload = build_payload(
        scheme=crypto, method="POST", path="/p", body=b"x", nonce=nonce, sender=alias, receiver=AXON.ss58_address
    )
    headers = {
        "x-bittensor-version": "1",
        "x-bittensor-hotkey": alias,
        "x-bittensor-nonce": str(nonce),
        "x-bittensor-crypto": crypto,
        "x-bittensor-receiver": AXON.ss58_address,
        "x-bittensor-signature": caller.sign_hex(payload),
    }
    assert caller.verify(payload, headers["x-bittensor-signature"])  # a valid signature by that key
    with pytest.raises(NotVerifiedException, match="invalid hotkey address"):
        await verify_btauth(
            headers,
            b"x",
            method="POST",
            path="/p",
            receiver=AXON.ss58_address,
            store=store,
            max_age_s=10,
            allowed_skew_s=2,
        )
    assert len(store) == 0


# -- the replay window through verify_legacy -----------------------------------------------------


async def test_concurrent_calls_of_one_dendrite_are_never_refused_and_replays_always_are(make_store) -> None:
    store = make_store(VerifyPolicy())
    caller = Keypair.generate()
    rng = random.Random(21)

    async def call(synapse: Synapse) -> None:
        await asyncio.sleep(rng.random() * 0.003)  # arrives out of the order it was signed in
        await verify(synapse, store)

    sent: list[Synapse] = []
    for _ in range(15):
        batch = [signed(caller, time.time_ns()) for _ in range(48)]
        await asyncio.gather(*(call(s) for s in batch))  # any refusal raises here
        sent += batch
        for synapse in rng.sample(sent, 6) + sent[:2]:
            with pytest.raises(NotVerifiedException) as info:
                await verify(replayed(synapse), store)
            assert str(info.value) == REPLAYED


async def test_a_full_store_answers_503_not_a_silent_accept() -> None:
    store = InMemoryNonceStore(VerifyPolicy().retention_ns, max_keys=1)
    await verify(signed(Keypair.generate(), time.time_ns()), store)
    with pytest.raises(ServiceUnavailable, match="nonce store full"):
        await verify(signed(Keypair.generate(), time.time_ns()), store)
    btauth = InMemoryNonceStore(VerifyPolicy().btauth_retention_ns, max_keys=1)
    for expected in (None, ServiceUnavailable):
        headers = sign_headers(Keypair.generate(), method="POST", path="/p", body=b"", receiver=AXON.ss58_address)
        check = verify_btauth(
            headers,
            b"",
            method="POST",
            path="/p",
            receiver=AXON.ss58_address,
            store=btauth,
            max_age_s=10,
            allowed_skew_s=2,
        )
        if expected is None:
            await check
        else:
            with pytest.raises(expected, match="nonce store full"):
                await check


# -- dendrites older than 7.2.0 ------------------------------------------------------------------

LEGACY_POLICY = VerifyPolicy(allow_legacy_versions=True)


async def test_a_pre_7_2_replay_is_refused(make_store) -> None:
    store = make_store(LEGACY_POLICY)
    caller = Keypair.generate()
    first = signed(caller, time.monotonic_ns(), version=PRE_7_2)
    await verify(first, store, LEGACY_POLICY)
    with pytest.raises(NotVerifiedException) as info:
        await verify(replayed(first), store, LEGACY_POLICY)
    assert str(info.value) == REPLAYED
    await verify(signed(caller, time.monotonic_ns(), version=PRE_7_2), store, LEGACY_POLICY)


async def test_pre_7_2_entries_are_kept_while_such_dendrites_are_allowed(monkeypatch) -> None:
    store = InMemoryNonceStore(LEGACY_POLICY.retention_ns)
    caller = Keypair.generate()
    old = signed(caller, time.monotonic_ns(), version=PRE_7_2)
    await verify(old, store, LEGACY_POLICY)
    fresh = signed(caller, time.time_ns(), uuid="u-2")
    await verify(fresh, store, LEGACY_POLICY)
    # A year later (far past any freshness window), with other traffic evicting what it may.
    later = time.time_ns() + 365 * 86400 * 10**9
    monkeypatch.setattr(time, "time_ns", lambda: later)
    await verify(signed(Keypair.generate(), later), store, LEGACY_POLICY)
    with pytest.raises(NotVerifiedException, match="a newer one was last processed"):
        await verify(replayed(old), store, LEGACY_POLICY)
    # The version is not signed: a captured 7.2+ request replayed as a pre-7.2 one skips the
    # freshness rule, so its key must be remembered too.
    with pytest.raises(NotVerifiedException, match="a newer one was last processed"):
        await verify(replayed(fresh, version=PRE_7_2), store, LEGACY_POLICY)


async def test_pre_7_2_entries_do_not_expire_in_redis(redis_server: RedisServer) -> None:
    from redis.asyncio import Redis

    from axon_grpc.auth.redis_store import RedisNonceStore

    store = RedisNonceStore(
        redis_server.url, retention_ns=LEGACY_POLICY.retention_ns, namespace=f"auth-expiry-{time.time_ns()}"
    )
    client = Redis.from_url(redis_server.url)
    try:
        caller = Keypair.generate()
        first = signed(caller, time.monotonic_ns(), version=PRE_7_2)
        await verify(first, store, LEGACY_POLICY)
        ttl_ms = await client.pttl(store.redis_key(f"{caller.ss58_address}:u-1"))
        assert ttl_ms > 100 * 365 * 86400 * 1000  # kept for as long as Redis keeps it
        with pytest.raises(NotVerifiedException, match="a newer one was last processed"):
            await verify(replayed(first), store, LEGACY_POLICY)
    finally:
        await client.aclose()
        await store.close()


def test_retention_is_bounded_unless_pre_7_2_dendrites_are_allowed() -> None:
    assert VerifyPolicy().retention_ns == 94 * 10**9
    assert LEGACY_POLICY.retention_ns >= 100 * 365 * 86400 * 10**9
    assert LEGACY_POLICY.btauth_retention_ns == VerifyPolicy().btauth_retention_ns


def test_a_nonce_in_another_unit_is_named() -> None:
    """Rule R13: a nonce counting seconds, milliseconds or microseconds is told so; one in
    nanoseconds (however stale or early) and a small count are not mistaken for one."""
    from axon_grpc.auth.legacy import nonce_unit

    now = time.time_ns()
    assert nonce_unit(now // 10**9, now) == "seconds"
    assert nonce_unit(now // 10**6, now) == "milliseconds"
    assert nonce_unit(now // 10**3, now) == "microseconds"
    for nonce in (now, now - 3600 * 10**9, now + 120 * 10**9, 0, 1, 12345):
        assert nonce_unit(nonce, now) is None
