"""Attacks on ``axon-session/1`` (docs/SESSIONS.md), each next to the case it must not break: the
open's decoder, a session call's metadata, the axon's session state, identity confusion, and a
hostile axon against the Dendrite. Real grpc.aio servers on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any, Callable, Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon_grpc import Dendrite, Keypair, KeypairWallet
from axon_grpc.auth import session_wire as wire
from axon_grpc.auth.keys import parse_signature, verify_signature
from axon_grpc.auth.legacy import reply_hash
from axon_grpc.auth.session_table import CounterWindow, OpenRate
from axon_grpc.auth.sessions import SessionPolicy
from axon_grpc.streaming import varint
from axon_grpc.testing import serve_axon

from .hostile_axon import Hostile, serve_hostile
from .raw_h2 import raw_grpc_call
from .session_support import BODY_7, DUMMY, call, count_crypto, opened, raw_open, session_metadata, signed_open
from .support import Dummy, RawCaller, dummy_forward
from .test_bridge_client import serve_bridge
from .test_streaming import Story, story_forward

#: Pieces of protobuf the fuzzing strings together: tags of each field and wire type, varints of
#: each length, lengths past the end, UTF-8 and not.
_PIECES = [
    *(bytes([n << 3 | w]) for n in range(0, 13) for w in range(8)),
    b"\x80",
    b"\xff" * 9 + b"\x01",
    b"\x80" * 9 + b"\x02",
    b"\x01",
    b"\x20",
    b"\x7f",
    b"\xff\xff\xff\xff\x0f",
    b"axon-session/1",
    b"\xed\xa0\x80",
    bytes(32),
]

REOPEN = "Not Verified with error: Unknown session; open a new one (rule R27)"


async def _calls(dendrite: Dendrite, info: Any, n: int, timeout: float) -> tuple[list[Any], float]:
    started = time.monotonic()
    results = await asyncio.gather(
        *(dendrite.call(info, Dummy(input=7), timeout=timeout, deserialize=False) for _ in range(n))
    )
    return results, time.monotonic() - started


# -- a hostile axon against the Dendrite ----------------------------------------------------------


async def test_an_axon_refusing_every_open_gets_one_open_and_signed_calls() -> None:
    """``auto`` learns the announcement, tries one open, and signs its calls after the refusal:
    concurrent calls do not each try (and wait for) an open of their own."""
    hostile = Hostile(open_refusal=(grpc.StatusCode.UNAVAILABLE, "Too many session opens; retry later (rule R25)"))
    async with serve_hostile(hostile) as h, Dendrite(KeypairWallet.generate()) as dendrite:
        first = await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False)
        assert (first.dendrite.status_code, first.output) == (200, 14)
        results, _ = await _calls(dendrite, h.info, 20, 5)
    assert [(r.dendrite.status_code, r.output) for r in results] == [(200, 14)] * 20
    assert hostile.opens == 1
    assert all("bt_header_dendrite_signature" in c and wire.SESSION_KEY not in c for c in hostile.calls)


async def test_an_axon_holding_opens_does_not_hold_calls_past_their_timeout() -> None:
    hostile = Hostile(open_delay=30.0)
    async with serve_hostile(hostile) as h, Dendrite(KeypairWallet.generate()) as dendrite:
        await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False)  # learns the announcement
        results, took = await _calls(dendrite, h.info, 8, 1.0)
    assert took < 4.0, took
    assert hostile.opens == 1
    assert {r.dendrite.status_code for r in results} <= {200, 408}


@pytest.mark.parametrize(
    "change",
    [
        {"signature": "0x" + "00" * 64},
        {"session_id": "x" * 10_000},
        {"session_id": ""},
        {"lifetime_s": 0},
        {"max_calls": 0},
        {"nonce": 1},
        {"axon_ephemeral_key": bytes(32)},  # a low-order point: no shared secret
    ],
    ids=lambda change: next(iter(change)),
)
async def test_a_bad_accept_makes_auto_sign_its_calls(change: dict[str, Any]) -> None:
    def alter(accept: wire.SessionAccept) -> None:
        for key, value in change.items():
            setattr(accept, key, value)

    hostile = Hostile(alter=alter, signature=change.get("signature"))
    async with serve_hostile(hostile) as h, Dendrite(KeypairWallet.generate()) as dendrite:
        for _ in range(4):
            result = await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False)
            assert (result.dendrite.status_code, result.output) == (200, 14), result.dendrite.status_message
    assert hostile.opens == 1
    assert not any(wire.SESSION_KEY in c for c in hostile.calls)


@pytest.mark.parametrize(
    "session_id",
    ["0badc0de-\nab", "0badc0de-\u00e9\u00e9", "0badc0de- lead", "0badc0de-\x7f"],
    ids=["newline", "non-ascii", "space", "del"],
)
async def test_an_accept_with_an_id_unfit_for_metadata_is_refused_by_the_dendrite(session_id: str) -> None:
    """A session id is sent as metadata: one that cannot be is not taken, and the call goes signed."""

    def alter(accept: wire.SessionAccept) -> None:
        accept.session_id = session_id

    hostile = Hostile(alter=alter)
    async with serve_hostile(hostile) as h, Dendrite(KeypairWallet.generate()) as dendrite:
        for _ in range(3):
            result = await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False)
            assert (result.dendrite.status_code, result.output) == (200, 14), result.dendrite.status_message
    assert hostile.opens == 1


@pytest.mark.parametrize("lifetime_s, max_calls", [(2**63, 2**63), (1, 1)])
async def test_extreme_terms_signed_by_the_axon_are_used_within_bounds(lifetime_s: int, max_calls: int) -> None:
    def alter(accept: wire.SessionAccept) -> None:
        accept.lifetime_s, accept.max_calls = lifetime_s, max_calls

    hostile = Hostile(alter=alter)
    async with serve_hostile(hostile) as h, Dendrite(KeypairWallet.generate()) as dendrite:
        for _ in range(5):
            result = await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False)
            assert (result.dendrite.status_code, result.output) == (200, 14), result.dendrite.status_message
    sent = [c for c in hostile.calls if wire.SESSION_KEY in c]
    # One session for all (2**63) or one per call (max_calls 1): never more opens than calls.
    assert hostile.opens == (1 if max_calls > 1 else 4)
    assert len(sent) == 4


async def test_an_axon_refusing_every_session_call_with_the_reopen_words_is_not_looped_on() -> None:
    """Told 'open a new one' by every session call, the Dendrite opens a new session once, then
    signs its calls to that axon for a while: two opens in all, whatever the number of calls."""
    hostile = Hostile(call_refusal=(grpc.StatusCode.UNAUTHENTICATED, REOPEN))
    async with serve_hostile(hostile) as h, Dendrite(KeypairWallet.generate()) as dendrite:
        await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False)  # learns the announcement
        results = [await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False) for _ in range(5)]
    assert [(r.dendrite.status_code, r.output) for r in results] == [(200, 14)] * 5
    assert hostile.opens == 2
    by_session = [c for c in hostile.calls if wire.SESSION_KEY in c]
    assert len(by_session) == 2 and len(hostile.calls) == 1 + 2 + 5


# -- a session call's metadata ----------------------------------------------------------------------


def _raw(metadata: list[tuple[str, str]], replace: dict[str, bytes] | None = None) -> list[tuple[bytes, bytes]]:
    replace = replace or {}
    return [(k.encode(), replace.get(k, v.encode())) for k, v in metadata]


async def _raw_call(port: int, metadata: list[tuple[bytes, bytes]], body: bytes = BODY_7) -> tuple[str, str]:
    answer = await asyncio.to_thread(raw_grpc_call, port, DUMMY, body, metadata)
    return answer.get(b"grpc-status", b"").decode(), answer.get(b"grpc-message", b"").decode()


MAC_MISMATCH = ("16", "Not Verified with error: Session MAC mismatch (rule R27)")


@pytest.mark.parametrize(
    "mac",
    ["\u00e9".encode("latin-1") * 64, "\u00e9".encode() * 32, b"\x80" * 64, b"\xff" * 10],
    ids=["latin-1", "utf-8", "0x80", "short"],
)
async def test_a_mac_outside_ascii_is_a_mismatch_not_an_error(
    session_axon: Any, mac: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    port = h.info.port
    assert await _raw_call(port, _raw(session_metadata(session, 1, BODY_7))) == ("0", "")
    assert await _raw_call(port, _raw(session_metadata(session, 2, BODY_7), {wire.MAC_KEY: mac})) == MAC_MISMATCH
    assert await _raw_call(port, _raw(session_metadata(session, 2, BODY_7))) == ("0", "")  # counter 2 not burnt
    # Nothing of the axon's logged (gRPC itself logs a value that is not UTF-8, for any key).
    assert not [r for r in caplog.records if r.name.startswith("axon_grpc") and r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "counter, answer",
    [
        (
            "+3",
            (
                "3",
                "Improperly formatted request. axon-session-counter must be a non-negative decimal integer (rule R4)",
            ),
        ),
        (
            "-3",
            (
                "3",
                "Improperly formatted request. axon-session-counter must be a non-negative decimal integer (rule R4)",
            ),
        ),
        (
            " 3",
            (
                "3",
                "Improperly formatted request. axon-session-counter must be a non-negative decimal integer (rule R4)",
            ),
        ),
        (
            "3_0",
            (
                "3",
                "Improperly formatted request. axon-session-counter must be a non-negative decimal integer (rule R4)",
            ),
        ),
        (
            "\u0663",
            (
                "3",
                "Improperly formatted request. axon-session-counter must be a non-negative decimal integer (rule R4)",
            ),
        ),
        ("0", ("16", "Not Verified with error: Session counter must be at least 1 (rule R27)")),
        (str(2**64 + 1), ("16", "Not Verified with error: Session call limit reached; open a new one (rule R27)")),
        ("9" * 21, ("3", "Improperly formatted request. axon-session-counter is longer than 20 characters (rule R4)")),
    ],
)
async def test_a_counter_not_in_decimal_or_out_of_range_is_refused(
    session_axon: Any, counter: str, answer: tuple[str, str]
) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    metadata = session_metadata(session, 3, BODY_7)
    sent = await _raw_call(h.info.port, _raw(metadata, {wire.COUNTER_KEY: counter.encode()}))
    assert sent == answer
    assert await _raw_call(h.info.port, _raw(metadata)) == ("0", "")  # the honest counter 3 still works


async def test_a_mac_of_the_wrong_case_or_length_is_refused(session_axon: Any) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    metadata = session_metadata(session, 1, BODY_7)
    mac = dict(metadata)[wire.MAC_KEY]
    for other in (mac.upper(), mac[:-1], mac[:32], ""):
        changed = [(k, other if k == wire.MAC_KEY else v) for k, v in metadata]
        status, _, details, trailers = await call(channel, DUMMY, BODY_7, changed)
        assert status == grpc.StatusCode.UNAUTHENTICATED, details
        assert details in (MAC_MISMATCH[1], "Not Verified with error: Missing session MAC (rule R27)")
        assert "bt_header_axon_signature" not in trailers
    status, _, details, _ = await call(
        channel, DUMMY, BODY_7, [(k, v + "0" if k == wire.MAC_KEY else v) for k, v in metadata]
    )
    assert (status, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Improperly formatted request. axon-session-mac is longer than 64 characters (rule R4)",
    )
    assert (await call(channel, DUMMY, BODY_7, metadata))[0] == grpc.StatusCode.OK


async def test_a_session_id_of_another_worker_or_forged_is_refused_before_any_work(session_axon: Any) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    worker, _, rest = session.id.partition("-")
    for forged, words in (
        ("00000000-" + rest, "Session of another worker; open a new one"),
        (worker + "-" + "0" * 32, "Unknown session; open a new one"),
        (worker + "-", "Unknown session; open a new one"),
        ("\u00e9" * 8, None),
    ):
        metadata = [(k, forged if k == wire.SESSION_KEY else v) for k, v in session_metadata(session, 1, BODY_7)]
        status, details = await _raw_call(h.info.port, _raw(metadata))
        assert status == "16", details
        if words is not None:
            assert details == f"Not Verified with error: {words} (rule R27)"
    assert (await call(channel, DUMMY, BODY_7, session_metadata(session, 1, BODY_7)))[0] == grpc.StatusCode.OK


@pytest.mark.parametrize("missing", [wire.SESSION_KEY, wire.COUNTER_KEY, wire.MAC_KEY])
async def test_a_session_call_missing_a_key_is_refused_unsigned(session_axon: Any, missing: str) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    metadata = [(k, v) for k, v in session_metadata(session, 1, BODY_7) if k != missing]
    status, _, details, trailers = await call(channel, DUMMY, BODY_7, metadata)
    if missing == wire.SESSION_KEY:  # no session id: a legacy call without its keys
        assert (status, details) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: No SS58 formatted address or public key provided. (rule R3)",
        )
    else:
        assert status == grpc.StatusCode.UNAUTHENTICATED
        assert "bt_header_axon_signature" not in trailers
        assert details.startswith("Not Verified with error: Missing session")
    assert (await call(channel, DUMMY, BODY_7, session_metadata(session, 1, BODY_7)))[0] == grpc.StatusCode.OK


# -- the open's decoder ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, error",
    [
        (b"\x80", "truncated or overlong varint"),
        (b"\x30" + b"\xff" * 10 + b"\x01", "truncated or overlong varint"),
        (b"\x30" + b"\xff" * 9 + b"\x7f", "varint above 64 bits"),  # 2**70 - 1: no uint64
        (b"\x30" + b"\x80" * 9 + b"\x02", "varint above 64 bits"),  # 2**64
        (b"\x0a\xff\xff\xff\xff\x0f", "truncated field"),
        (b"\x0a" + b"\xff" * 9 + b"\x01", "truncated field"),  # a length of 2**64 - 1
        (b"\x0b", "unsupported wire type 3"),
        (b"\x0c", "unsupported wire type 4"),
        (b"\x0f", "unsupported wire type 7"),
        (b"\x09\x01", "truncated field"),
        (b"\x00\x00", "field number 0"),
        (b"\x02\x00", "field number 0"),
        (b"\x0a\x02\xff\xfe", "field version is not UTF-8"),
        (b"\x0a\x03\xed\xa0\x80", "field version is not UTF-8"),  # a lone surrogate
        (b"\x08\x05", "field version has the wrong wire type"),
        (b"\x32\x01a", "field nonce has the wrong wire type"),
        (b"\x0a" + bytes([0x80, 0x08]) + b"x" * 1024, "message larger than 1024 bytes"),
    ],
)
def test_a_malformed_open_raises_the_decoders_error(data: bytes, error: str) -> None:
    for message in (wire.SessionOpen, wire.SessionAccept):
        with pytest.raises(wire.WireFormatError) as raised:
            message.decode(data)
        assert str(raised.value) == error


def test_the_decoder_reads_what_protobuf_allows() -> None:
    """Beside the refusals: the largest uint64, duplicate fields (the last wins), unknown fields of
    each wire type skipped, and the empty message."""
    nonce = b"\x30" + b"\xff" * 9 + b"\x01"
    assert wire.SessionOpen.decode(nonce).nonce == 2**64 - 1
    assert wire.SessionOpen.decode(b"\x0a\x01a\x0a\x01b").version == "b"
    unknown = b"\x40\x01" + b"\x49" + bytes(8) + b"\x52\x01z" + b"\x5d" + bytes(4)
    assert wire.SessionOpen.decode(unknown + b"\x0a\x01c") == wire.SessionOpen(version="c")
    assert wire.SessionOpen.decode(b"") == wire.SessionOpen()


@settings(max_examples=int(os.environ.get("AXON_FUZZ_EXAMPLES", "300")), deadline=None)
@given(st.binary(max_size=1100) | st.lists(st.sampled_from(_PIECES), max_size=24).map(b"".join))
def test_the_decoder_only_raises_its_own_error(data: bytes) -> None:
    for message in (wire.SessionOpen, wire.SessionAccept):
        try:
            decoded = message.decode(data)
        except wire.WireFormatError:
            continue
        assert message.decode(decoded.encode()) == decoded  # what it reads, it writes back
        assert len(decoded.encode()) <= len(data)


# -- identity: a session's hotkey against the other schemes' keys -----------------------------------


async def test_a_session_call_carrying_another_hotkeys_signed_keys_runs_as_the_sessions_hotkey() -> None:
    """Session keys win over the legacy and btauth/1 keys of the same call: the hooks, the answer's
    signature (R18) and the request count see only the hotkey that opened the session."""
    seen: list[str] = []

    def blacklist(synapse: Dummy) -> tuple[bool, str]:
        seen.append(synapse.dendrite.hotkey)
        return False, ""

    async with serve_axon({"forward_fn": dummy_forward, "blacklist_fn": blacklist}) as h:
        a, b = Keypair.generate(), Keypair.generate()
        other = RawCaller(h.info.ip_str(), h.info.hotkey, b)
        try:
            session = await opened(other.channel, h.info.hotkey, a)
            legacy_b = [(k, v) for k, v in other.metadata(BODY_7) if k != "timeout"]
            assert (await other.call("Dummy", BODY_7, legacy_b))[0] == grpc.StatusCode.OK  # B's own keys work
            btauth_b = [("x-bittensor-version", "1"), ("x-bittensor-hotkey", b.ss58_address)]
            mixed = session_metadata(session, 1, BODY_7) + legacy_b + btauth_b + [("bt_header_sign_answer", "1")]
            status, reply, _, trailers = await call(other.channel, DUMMY, BODY_7, mixed)
            assert (status, reply) == (grpc.StatusCode.OK, b"\x08\x07\x10\x0e")
            signed = f"answer/1.1.{a.ss58_address}.{h.info.hotkey}.{session.id}.{reply_hash(reply)}"
            assert verify_signature(
                h.info.hotkey, signed.encode(), parse_signature(trailers["bt_header_axon_signature"])
            )
            # B's signed keys with a forged session: refused, never taken as B's legacy call.
            forged = [(k, "0" * 64 if k == wire.MAC_KEY else v) for k, v in session_metadata(session, 2, BODY_7)]
            status, _, details, trailers = await call(other.channel, DUMMY, BODY_7, forged + other.metadata(BODY_7))
            assert (status, details) == (grpc.StatusCode.UNAUTHENTICATED, MAC_MISMATCH[1])
            assert "bt_header_axon_signature" not in trailers
            status, _, details, _ = await call(
                other.channel, DUMMY, BODY_7, [(wire.SESSION_KEY, ""), *other.metadata(BODY_7)]
            )
            assert (status, details) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "Not Verified with error: Missing session id (rule R27)",
            )
        finally:
            await other.close()
    assert seen == [b.ss58_address, a.ss58_address]


async def test_a_stream_by_session_runs_as_its_hotkey_and_is_not_replayed() -> None:
    seen: list[str] = []

    def blacklist(synapse: Story) -> tuple[bool, str]:
        seen.append(synapse.dendrite.hotkey)
        return False, ""

    async with serve_axon({"forward_fn": story_forward, "blacklist_fn": blacklist}) as h:
        keypair = Keypair.generate()
        async with Dendrite(KeypairWallet(keypair), sessions="required") as dendrite:
            items = [i async for i in await dendrite.forward(h.info, Story(words=3), streaming=True, deserialize=False)]
        assert items[:3] == ["w0", "w1", "w2"] and items[-1].dendrite.status_code == 200
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        try:
            session = await opened(channel, h.info.hotkey, keypair)
            body = b"\x10\x02"  # Story(words=2)
            metadata = session_metadata(session, 1, body, method="/axon.v1.Axon/Story")
            for expected in (grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED):
                stream = channel.unary_stream("/axon.v1.Axon/Story")(body, metadata=metadata, timeout=5)
                try:
                    chunks = [m async for m in stream]
                    assert len(chunks) == 3
                    status = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as e:
                    status = e.code()
                    assert e.details() == "Not Verified with error: Session counter already used (rule R27)"
                assert status == expected
        finally:
            await channel.close()
    assert seen == [keypair.ss58_address] * 2


# -- the axon's session state -----------------------------------------------------------------------


async def test_strangers_filling_the_table_cannot_evict_an_honest_session() -> None:
    """Opens from many hotkeys stop at the table's bounds (refused, not evicting): an honest caller's
    session keeps working, and its Dendrite signs when no new session can be opened."""
    policy = SessionPolicy(per_address=1000, total=8, open_rate=1000, open_burst=1000, open_burst_per_address=1000)
    async with serve_axon(dummy_forward, sessions=policy) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        try:
            honest = await opened(channel, h.info.hotkey)
            answers = [
                await raw_open(channel, signed_open(Keypair.generate(), h.info.hotkey).encode()) for _ in range(20)
            ]
            assert [a[0] for a in answers] == [grpc.StatusCode.OK] * 7 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 13
            assert answers[-1][2] == "Too many sessions (rule R25)"
            assert len(h.axon.sessions.table) == 8
            for counter in (1, 2):
                assert (await call(channel, DUMMY, BODY_7, session_metadata(honest, counter, BODY_7)))[
                    0
                ] == grpc.StatusCode.OK
            async with Dendrite(KeypairWallet.generate()) as dendrite:
                results = [await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False) for _ in range(3)]
            assert [(r.dendrite.status_code, r.output) for r in results] == [(200, 14)] * 3
        finally:
            await channel.close()


def test_the_open_rate_remembers_a_bounded_number_of_addresses() -> None:
    rate = OpenRate(SessionPolicy(addresses_tracked=64, open_burst_per_address=1, open_rate_per_address=0.001))
    now = time.monotonic()
    assert rate.take("10.0.0.1", now=now) and not rate.take("10.0.0.1", now=now)
    for i in range(10_000):
        rate.take(f"10.1.{i // 256}.{i % 256}", now=now)
    assert len(rate.by_address) == 64
    assert rate.all.tokens >= 0


def test_a_sessions_counters_are_bounded_by_the_window() -> None:
    window = CounterWindow(1024)
    for counter in (1, 2, 10**6, 10**6 - 1024, 10**12):
        assert window.accept(counter) is None
        assert window.bits.bit_length() <= 1025
    assert window.accept(10**12 - 1025) == "below"
    assert window.accept(10**12) == "used"


# -- the open's cost ----------------------------------------------------------------------------------


async def test_a_4_mib_open_is_refused_and_past_the_rate_not_even_read() -> None:
    policy = SessionPolicy(open_rate_per_address=0.001, open_burst_per_address=2)
    async with serve_axon(dummy_forward, sessions=policy) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str(), options=[("grpc.max_send_message_length", 8 << 20)])
        try:
            # Just under gRPC's own 4 MiB bound on a message (which refuses it before the axon sees it).
            size = (4 << 20) - 64
            huge = b"\x0a" + varint(size) + bytes(size)
            status, _, details, trailers = await raw_open(channel, huge)
            assert (status, details) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "A session open has at most 1024 bytes (rule R25)",
            )
            assert "bt_header_axon_signature" not in trailers
            assert (await opened(channel, h.info.hotkey)) is not None
            status, _, details, _ = await raw_open(channel, huge)
            assert (status, details) == (grpc.StatusCode.UNAVAILABLE, "Too many session opens; retry later (rule R25)")
        finally:
            await channel.close()


async def test_no_refused_open_costs_the_axon_a_signing(session_axon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each refusal of an open, for each cause: unsigned, and no signature verified before the
    signature is what is checked; only the accepted open is signed."""
    h, channel = session_axon
    signed, verified = count_crypto(monkeypatch, h.axon)
    keypair = Keypair.generate()
    axon = h.info.hotkey
    unverified = {
        "garbage": b"\xff",
        "version": signed_open(keypair, axon, version="axon-session/2").encode(),
        "receiver": signed_open(keypair, Keypair.generate().ss58_address).encode(),
        "key size": signed_open(keypair, axon, ephemeral_key=bytes(31)).encode(),
        "stale": signed_open(keypair, axon, nonce=time.time_ns() - 60 * 10**9).encode(),
        "future": signed_open(keypair, axon, nonce=time.time_ns() + 120 * 10**9).encode(),
        "crypto": signed_open(keypair, axon, crypto="rsa").encode(),
    }
    for name, data in unverified.items():
        status, _, details, trailers = await raw_open(channel, data)
        assert status != grpc.StatusCode.OK and "bt_header_axon_signature" not in trailers, name
    assert (signed, verified) == ([], [])
    bad_signature = signed_open(keypair, axon)
    bad_signature.signature = "0x" + "11" * 64
    low_order = signed_open(keypair, axon, ephemeral_key=bytes(32))
    replayed = signed_open(keypair, axon)
    assert (await raw_open(channel, replayed.encode()))[0] == grpc.StatusCode.OK
    for data in (bad_signature.encode(), low_order.encode(), replayed.encode()):
        status, _, details, trailers = await raw_open(channel, data)
        assert status == grpc.StatusCode.UNAUTHENTICATED and "bt_header_axon_signature" not in trailers, details
    assert len(signed) == 1  # the accepted open's only
    assert len(verified) == 4


@settings(max_examples=int(os.environ.get("AXON_FUZZ_EXAMPLES", "60")), deadline=None)
@given(data=st.binary(max_size=300) | st.lists(st.sampled_from(_PIECES), max_size=16).map(b"".join))
def test_any_open_gets_a_client_status(fuzz_axon: Any, data: bytes) -> None:
    status, _, details, trailers = fuzz_axon(data)
    assert status in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ), (status, details)
    assert details.endswith("(rule R25)") and trailers["axon-sessions"] == wire.VERSION
    assert "bt_header_axon_signature" not in trailers


@pytest.fixture(scope="module")
def fuzz_served() -> Iterator[tuple[asyncio.AbstractEventLoop, Any, grpc.aio.Channel]]:
    """One axon on a loop of its own (run by the tests that use it), whose open rate lets a fuzz run
    through; its harness and a channel to it."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    policy = SessionPolicy(open_rate=1e6, open_burst=10**6, open_rate_per_address=1e6, open_burst_per_address=10**6)
    context = serve_axon(dummy_forward, sessions=policy)
    h = loop.run_until_complete(context.__aenter__())
    channel = grpc.aio.insecure_channel(h.info.ip_str())
    try:
        yield loop, h, channel
    finally:
        loop.run_until_complete(channel.close())
        loop.run_until_complete(context.__aexit__(None, None, None))
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture(scope="module")
def fuzz_axon(fuzz_served: tuple[asyncio.AbstractEventLoop, Any, grpc.aio.Channel]) -> Callable[[bytes], Any]:
    """A synchronous ``open(bytes)`` against the fuzzed axon."""
    loop, _, channel = fuzz_served
    return lambda data: loop.run_until_complete(raw_open(channel, data))


@pytest.fixture
def fuzz_axon_port(fuzz_served: tuple[asyncio.AbstractEventLoop, Any, grpc.aio.Channel]) -> Iterator[tuple[int, str]]:
    """The fuzzed axon's port and the id of a session open there, its loop run in a thread meanwhile
    (raw HTTP/2 calls block)."""
    loop, h, channel = fuzz_served
    session = loop.run_until_complete(opened(channel, h.info.hotkey))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield h.info.port, session.id
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


async def test_concurrent_calls_told_to_reopen_open_one_session_between_them() -> None:
    """An axon that lost its sessions (a restart) answers every call of the old session 'open a new
    one': a Dendrite's concurrent calls then open one new session, not one each."""
    async with serve_axon(dummy_forward) as h, Dendrite(KeypairWallet.generate(), sessions="required") as dendrite:
        first = await dendrite.call(h.info, Dummy(input=1), timeout=5, deserialize=False)
        assert first.dendrite.status_code == 200
        table = h.axon.sessions.table
        for session in list(table.sessions.values()):
            table.drop(session)
        results = await asyncio.gather(
            *(dendrite.call(h.info, Dummy(input=i), timeout=5, deserialize=False) for i in range(30))
        )
        assert [(r.dendrite.status_code, r.output) for r in results] == [(200, 2 * i) for i in range(30)]
        assert h.axon.metrics is not None
        text = h.axon.metrics.exposition()[0].decode()
        assert 'axon_session_opens_total{result="accepted"} 2.0' in text
        assert len(table) == 1


async def test_session_keys_on_the_http_bridge_are_refused_not_read_as_the_signed_call() -> None:
    """The bridge serves no sessions: a validly signed legacy request that also carries session keys
    is refused unsigned (R24), never run as the signed call nor as the session's."""
    async with serve_bridge(dummy_forward) as bridged:
        client = bridged.client
        assert (await client.call(Dummy(input=5))).status == 200
        headers, body = client.prepare(Dummy(input=5))
        for extra in (
            {wire.SESSION_KEY: "0badc0de-" + "0" * 32, wire.COUNTER_KEY: "1", wire.MAC_KEY: "0" * 64},
            {wire.SESSION_KEY: ""},
        ):
            response = await client.send("/Dummy", {**headers, **extra}, body)
            assert response.status == 401, response.text
            assert response.headers["bt_header_axon_status_message"] == (
                "Not Verified with error: Sessions are not served over this protocol; use gRPC"
            )
            assert "bt_header_axon_signature" not in response.headers
        await bridged.assert_still_serving()


LIVE = b"live session"  #: stands for the id of the live session in the fuzz
_VALUE = st.binary(min_size=0, max_size=70).filter(lambda v: not (set(v) & {0, 10, 13})) | st.sampled_from(
    [b"1", b"0001", b"18446744073709551617", b"0" * 64, b"A" * 64, b"\xe9" * 64, b"00000000-" + b"0" * 32]
)


@settings(
    max_examples=int(os.environ.get("AXON_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture
    ],  # the axon is the module's; only its thread is the test's
)
@given(
    session_id=st.just(LIVE) | st.none() | _VALUE,
    counter=st.integers(1, 2**64).map(lambda i: str(i).encode()) | st.none() | _VALUE,
    mac=st.none() | _VALUE,
    timeout=st.none() | _VALUE,
)
def test_any_session_metadata_gets_a_client_status(
    fuzz_axon_port: tuple[int, str],
    session_id: bytes | None,
    counter: bytes | None,
    mac: bytes | None,
    timeout: bytes | None,
) -> None:
    """Whatever bytes the session keys hold (raw HTTP/2: outside ASCII too), for a live session or
    not, the answer is a client status; none is INTERNAL or UNKNOWN."""
    port, live = fuzz_axon_port
    if session_id is LIVE:
        session_id = live.encode()
    metadata = [(wire.SESSION_KEY.encode(), session_id if session_id is not None else b"")]
    for key, value in ((wire.COUNTER_KEY, counter), (wire.MAC_KEY, mac), ("timeout", timeout)):
        if value is not None:
            metadata.append((key.encode(), value))
    answer = raw_grpc_call(port, DUMMY, BODY_7, metadata)
    if not answer:  # a value HTTP/2 itself refuses: the stream was reset before the axon saw it
        return
    assert answer[b"grpc-status"] in (b"3", b"16"), answer


async def test_the_open_rate_and_session_bounds_are_per_caller_address() -> None:
    policy = SessionPolicy(open_rate_per_address=0.001, open_burst_per_address=3, per_address=2)
    async with serve_axon(dummy_forward, sessions=policy) as h:
        keypair = Keypair.generate()

        def open_from(source: str) -> tuple[bytes, bytes]:
            data = signed_open(keypair, h.info.hotkey).encode()
            answer = raw_grpc_call(h.info.port, wire.OPEN_METHOD, data, [], source=source)
            return answer[b"grpc-status"], answer.get(b"grpc-message", b"")

        assert [await asyncio.to_thread(open_from, "127.0.0.2") for _ in range(4)] == [
            (b"0", b""),
            (b"0", b""),
            (b"8", b"Too many sessions from this address (rule R25)"),
            (b"14", b"Too many session opens; retry later (rule R25)"),
        ]
        assert await asyncio.to_thread(open_from, "127.0.0.3") == (b"0", b"")


async def test_an_axon_holding_its_open_does_not_stretch_a_streams_timeout() -> None:
    """The time an open took is taken from the stream's timeout, as from a unary call's."""
    hostile = Hostile(open_delay=30.0)
    async with serve_hostile(hostile) as h, Dendrite(KeypairWallet.generate()) as dendrite:
        await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False)  # learns the announcement
        started = time.monotonic()
        stream = await dendrite.forward(h.info, Story(words=2), timeout=2.0, streaming=True, deserialize=False)
        items = [item async for item in stream]
        took = time.monotonic() - started
    assert items[-1].dendrite.status_code == 408
    assert took < 3.5, took
    assert hostile.opens == 1


async def test_the_same_session_call_sent_twenty_times_at_once_runs_once(session_axon: Any) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    metadata = session_metadata(session, 1, BODY_7)
    answers = await asyncio.gather(*(call(channel, DUMMY, BODY_7, metadata) for _ in range(20)))
    statuses = sorted(a[0].value[0] for a in answers)
    assert statuses == [0] + [16] * 19
    assert {a[2] for a in answers if a[0] != grpc.StatusCode.OK} == {
        "Not Verified with error: Session counter already used (rule R27)"
    }


async def test_required_sessions_against_an_axon_holding_opens_fail_within_the_timeout() -> None:
    hostile = Hostile(open_delay=30.0)
    async with serve_hostile(hostile) as h, Dendrite(KeypairWallet.generate(), sessions="required") as dendrite:
        results, took = await _calls(dendrite, h.info, 6, 1.0)
    assert took < 3.0, took
    assert {r.dendrite.status_code for r in results} == {408}
    assert all(wire.SESSION_KEY not in c and "bt_header_dendrite_signature" not in c for c in hostile.calls)
