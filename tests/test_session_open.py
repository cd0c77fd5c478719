"""Opening a session (``axon-session/1``, rules R25-R26) on a real grpc.aio axon: the checks an
open passes, the bounds on sessions and on the rate of opens, and the client's check of the
axon's accept (downgrade and substitution fail there)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import grpc
import pytest

from axon_grpc import Keypair
from axon_grpc.auth import keys as keys_module
from axon_grpc.auth import session_wire as wire
from axon_grpc.auth.sessions import SessionPolicy
from axon_grpc.client.sessions import SessionOpenFailed, accept_session, open_request
from axon_grpc.testing import serve_axon

from .session_support import (
    BODY_7,
    DUMMY,
    call,
    opened,
    raw_open,
    session_metadata,
    signed_open,
)
from .support import dummy_forward, settles_to


def refused(answer: tuple[Any, ...], status: grpc.StatusCode, details: str) -> None:
    assert (answer[0], answer[2]) == (status, details)
    trailers = answer[3]
    assert trailers["axon-sessions"] == "axon-session/1" and "bt_header_axon_signature" not in trailers
    assert trailers["bt_header_axon_status_code"] != "200"


async def test_a_handshake_for_another_axon_is_refused(session_axon: Any) -> None:
    h, channel = session_axon
    keypair = Keypair.generate()
    other_axon = Keypair.generate().ss58_address
    answer = await raw_open(channel, signed_open(keypair, other_axon).encode())
    refused(
        answer, grpc.StatusCode.UNAUTHENTICATED, "Not Verified with error: Session open is for another axon (rule R25)"
    )
    # Signed for this axon, then readdressed to another: the receiver is checked first.
    readdressed = signed_open(keypair, h.info.hotkey)
    readdressed.axon_hotkey = other_axon
    refused(
        await raw_open(channel, readdressed.encode()),
        grpc.StatusCode.UNAUTHENTICATED,
        "Not Verified with error: Session open is for another axon (rule R25)",
    )
    tampered = signed_open(keypair, h.info.hotkey)
    tampered.ephemeral_key = wire.ephemeral_keypair()[1]  # an on-path attacker's own key
    refused(
        await raw_open(channel, tampered.encode()),
        grpc.StatusCode.UNAUTHENTICATED,
        "Not Verified with error: Session open signature mismatch (rule R25)",
    )


async def test_a_handshake_replayed_is_refused(session_axon: Any) -> None:
    h, channel = session_axon
    request, private = open_request(Keypair.generate(), h.info.hotkey)
    first = await raw_open(channel, request.encode())
    assert first[0] == grpc.StatusCode.OK and first[1] is not None
    session = accept_session(request, private, first[1])
    assert (await call(channel, DUMMY, BODY_7, session_metadata(session, 1, BODY_7)))[0] == grpc.StatusCode.OK
    refused(
        await raw_open(channel, request.encode()),
        grpc.StatusCode.UNAUTHENTICATED,
        "Not Verified with error: Session open nonce already used (rule R25)",
    )
    keypair = Keypair.generate()
    stale = signed_open(keypair, h.info.hotkey, nonce=time.time_ns() - 11 * 10**9)
    refused(
        await raw_open(channel, stale.encode()),
        grpc.StatusCode.UNAUTHENTICATED,
        "Not Verified with error: Session open nonce is too old (rule R25)",
    )
    seconds = signed_open(keypair, h.info.hotkey, nonce=time.time_ns() // 10**9)
    refused(
        await raw_open(channel, seconds.encode()),
        grpc.StatusCode.UNAUTHENTICATED,
        "Not Verified with error: Nonce must be nanoseconds since the Unix epoch; this one is in seconds (rule R25)",
    )


async def test_an_unknown_session_version_is_refused(session_axon: Any) -> None:
    h, channel = session_axon
    later = signed_open(Keypair.generate(), h.info.hotkey, version="axon-session/2")
    refused(
        await raw_open(channel, later.encode()),
        grpc.StatusCode.UNAUTHENTICATED,
        "Not Verified with error: Unsupported session version; this axon speaks axon-session/1 (rule R25)",
    )
    for garbage in (b"\xff\xff\xff", b"\x2a\x05abc"):  # a broken varint; a key of 3 bytes
        status, _, details, _ = await raw_open(channel, garbage)
        assert status == grpc.StatusCode.INVALID_ARGUMENT and details.endswith("(rule R25)"), details
    status, _, details, _ = await raw_open(channel, b"\x0a" + bytes([0x80, 0x10]) + b"x" * 2048)
    assert (status, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "A session open has at most 1024 bytes (rule R25)")


async def test_an_altered_accept_is_refused_by_the_client(session_axon: Any) -> None:
    """What an on-path attacker (or a dishonest axon) changes in the accept is caught by the
    client: each echo, the axon's key, the session's terms, the version and the signature."""
    h, channel = session_axon
    request, private = open_request(Keypair.generate(), h.info.hotkey)
    status, answer, _, _ = await raw_open(channel, request.encode())
    assert status == grpc.StatusCode.OK and answer is not None
    genuine = wire.SessionAccept.decode(answer)
    changes = {
        "version": "axon-session/0",
        "dendrite_hotkey": Keypair.generate().ss58_address,
        "axon_hotkey": Keypair.generate().ss58_address,
        "dendrite_ephemeral_key": wire.ephemeral_keypair()[1],
        "axon_ephemeral_key": wire.ephemeral_keypair()[1],
        "nonce": genuine.nonce + 1,
        "session_id": genuine.session_id[:-1] + "0",
        "lifetime_s": 10**9,
        "max_calls": 2**40,
        "window": 2**20,
        "signature": "0x" + "00" * 64,
    }
    for field, value in changes.items():
        altered = dataclasses.replace(genuine, **{field: value})
        if altered == genuine:
            continue
        with pytest.raises(SessionOpenFailed, match="session accept not verified") as failed:
            accept_session(request, private, altered.encode())
        assert failed.value.status == 422
    # Re-signed by another key (an axon that is not the one the caller named): refused too.
    impostor = Keypair.generate()
    resigned = dataclasses.replace(genuine, max_calls=2**40)
    resigned.signature = impostor.sign_hex(resigned.transcript())
    with pytest.raises(SessionOpenFailed, match="signature does not verify"):
        accept_session(request, private, resigned.encode())
    session = accept_session(request, private, answer)
    assert (session.id, session.max_calls) == (genuine.session_id, 1_000_000)


async def test_handshakes_are_rate_limited_per_address(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = SessionPolicy(open_rate_per_address=0.001, open_burst_per_address=3)
    async with serve_axon(dummy_forward, sessions=policy) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        try:
            for _ in range(3):
                await opened(channel, h.info.hotkey)
            verified: list[Any] = []
            real = keys_module._verify_raw
            monkeypatch.setattr(keys_module, "_verify_raw", lambda *a: verified.append(a) or real(*a))
            refused(
                await raw_open(channel, signed_open(Keypair.generate(), h.info.hotkey).encode()),
                grpc.StatusCode.UNAVAILABLE,
                "Too many session opens; retry later (rule R25)",
            )
            assert verified == []  # refused before any signature work
        finally:
            await channel.close()
    policy = SessionPolicy(open_rate=0.001, open_burst=2)  # over all addresses
    async with serve_axon(dummy_forward, sessions=policy) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        try:
            for _ in range(2):
                await opened(channel, h.info.hotkey)
            answer = await raw_open(channel, signed_open(Keypair.generate(), h.info.hotkey).encode())
            assert (answer[0], answer[2]) == (
                grpc.StatusCode.UNAVAILABLE,
                "Too many session opens; retry later (rule R25)",
            )
            assert h.axon.metrics is not None
            text = h.axon.metrics.exposition()[0].decode()
            assert 'axon_session_opens_total{result="rate"} 1.0' in text
            assert 'axon_session_opens_total{result="accepted"} 2.0' in text
        finally:
            await channel.close()


async def test_sessions_per_address_are_bounded() -> None:
    async with serve_axon(dummy_forward, sessions=SessionPolicy(per_address=2, total=3)) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        try:
            for _ in range(2):
                await opened(channel, h.info.hotkey)
            refused(
                await raw_open(channel, signed_open(Keypair.generate(), h.info.hotkey).encode()),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "Too many sessions from this address (rule R25)",
            )
            assert len(h.axon.sessions.table) == 2
            h.axon.sessions.table.by_address.clear()  # as if the two came from elsewhere
            await opened(channel, h.info.hotkey)
            answer = await raw_open(channel, signed_open(Keypair.generate(), h.info.hotkey).encode())
            assert (answer[0], answer[2]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many sessions (rule R25)")
        finally:
            await channel.close()


async def test_sessions_per_hotkey_are_bounded_by_evicting_the_oldest() -> None:
    async with serve_axon(dummy_forward, sessions=SessionPolicy(per_hotkey=2)) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        keypair = Keypair.generate()
        try:
            first = await opened(channel, h.info.hotkey, keypair)
            second = await opened(channel, h.info.hotkey, keypair)
            assert (await call(channel, DUMMY, BODY_7, session_metadata(second, 1, BODY_7)))[0] == grpc.StatusCode.OK
            assert (await call(channel, DUMMY, BODY_7, session_metadata(first, 1, BODY_7)))[0] == grpc.StatusCode.OK
            third = await opened(channel, h.info.hotkey, keypair)  # evicts the least recently used: second
            status, _, details, _ = await call(channel, DUMMY, BODY_7, session_metadata(second, 2, BODY_7))
            assert (status, details) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "Not Verified with error: Unknown session; open a new one (rule R27)",
            )
            for session in (first, third):
                assert (await call(channel, DUMMY, BODY_7, session_metadata(session, 2, BODY_7)))[
                    0
                ] == grpc.StatusCode.OK
            assert len(h.axon.sessions.table) == 2
            assert h.axon.metrics is not None
            assert 'axon_session_evictions_total{cause="hotkey_limit"} 1.0' in h.axon.metrics.exposition()[0].decode()
            assert "axon_sessions_live 2.0" in h.axon.metrics.exposition()[0].decode()
        finally:
            await channel.close()


async def test_an_open_failing_inside_the_axon_leaks_nothing(
    session_axon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h, channel = session_axon

    async def down(*args: Any) -> Any:
        raise RuntimeError("redis at 10.0.0.7:6379 refused the connection")

    monkeypatch.setattr(h.axon.verifier.legacy_store, "check_and_store", down)
    status, _, details, trailers = await raw_open(channel, signed_open(Keypair.generate(), h.info.hotkey).encode())
    assert status == grpc.StatusCode.INTERNAL and details.startswith("Internal Server Error #"), details
    assert "redis" not in details and trailers["bt_header_axon_status_code"] == "500"


async def test_opens_whose_message_never_comes_hold_few_call_slots_per_address() -> None:
    """A stranger (no key needed) who starts opens and never sends their message holds a call slot
    each until the read gives up: only ``opens_reading_per_address`` at once from one address; the
    next is refused before it is read, and the address may open again once they end."""
    policy = SessionPolicy(opens_reading_per_address=3)
    async with serve_axon(dummy_forward, sessions=policy) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        never = asyncio.Event()

        async def silent() -> Any:
            await never.wait()
            yield b""  # never reached: the open's message never comes

        held = [channel.stream_unary(wire.OPEN_METHOD)(silent(), timeout=30) for _ in range(3)]
        try:
            assert h.axon.sessions is not None
            await settles_to(lambda: _reading(h.axon.sessions), {"127.0.0.1": 3})
            refused(
                await raw_open(channel, signed_open(Keypair.generate(), h.info.hotkey).encode()),
                grpc.StatusCode.UNAVAILABLE,
                "Too many session opens; retry later (rule R25)",
            )
            for call in held:
                call.cancel()
            await settles_to(lambda: _reading(h.axon.sessions), {})
            await opened(channel, h.info.hotkey)  # the address opens again
        finally:
            for call in held:
                call.cancel()
            await channel.close()


async def _reading(sessions: Any) -> dict[str, int]:
    return dict(sessions.reading)
