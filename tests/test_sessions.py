"""Session calls (``axon-session/1``, rules R24 and R27) on a real grpc.aio axon on loopback:
the Dendrite's sessions, and each attack on a session call failing (docs/SESSIONS.md)."""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.request
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from axon_grpc import Dendrite, Keypair, KeypairWallet
from axon_grpc.auth.sessions import SessionPolicy
from axon_grpc.testing import serve_axon

from .session_support import (
    BODY_7,
    BODY_8,
    DUMMY,
    call,
    count_crypto,
    opened,
    raw_open,
    session_metadata,
)
from .support import Dummy, RawCaller, dummy_forward

PING = "/axon.v1.Axon/Synapse"


def samples(axon: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = axon.metrics.exposition()[0].decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def requests(axon: Any, scheme: str, status_class: str = "2xx") -> float:
    key = (
        "axon_requests_total",
        (("scheme", scheme), ("status_class", status_class), ("synapse", "Dummy"), ("transport", "grpc")),
    )
    return samples(axon).get(key, 0.0)


def opens(axon: Any, result: str = "accepted") -> float:
    return samples(axon).get(("axon_session_opens_total", (("result", result),)), 0.0)


async def test_the_axon_announces_sessions_on_every_answer() -> None:
    async with serve_axon(dummy_forward) as h, serve_axon(dummy_forward, sessions=False) as off:
        for harness, announced in ((h, True), (off, False)):
            raw = RawCaller(harness.info.ip_str(), harness.info.hotkey)
            try:
                unsigned = await call(raw.channel, PING, b"", ())
                signed = await raw.call("Dummy", BODY_7)
            finally:
                await raw.close()
            assert (unsigned[0], signed[0]) == (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OK)
            for trailers in (unsigned[3], signed[3]):
                assert trailers.get("axon-sessions") == ("axon-session/1" if announced else None)
                assert trailers["axon-contract"] == "axon.v1;rules=27"


def _http_session_call(port: int) -> tuple[int, str]:
    """A session call over the legacy HTTP protocol: (status, the axon's status message)."""
    headers = {"axon-session": "x", "axon-session-counter": "1", "axon-session-mac": "0" * 64}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/Dummy", data=b'{"input": 7}', method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers["bt_header_axon_status_message"]
    except urllib.error.HTTPError as e:
        return e.code, e.headers["bt_header_axon_status_message"]


async def test_a_session_call_to_an_axon_without_sessions_is_refused() -> None:
    async with serve_axon(dummy_forward, http_port=0) as h, serve_axon(dummy_forward, sessions=False) as off:
        assert await asyncio.to_thread(_http_session_call, int(h.axon.http_port)) == (
            401,
            "Not Verified with error: Sessions are not served over this protocol; use gRPC",
        )
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        other = grpc.aio.insecure_channel(off.info.ip_str())
        try:
            session = await opened(channel, h.info.hotkey)
            status, _, details, trailers = await call(other, DUMMY, BODY_7, session_metadata(session, 1, BODY_7))
            assert (status, details) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "Not Verified with error: Sessions are not served by this axon (rule R24)",
            )
            assert "bt_header_axon_signature" not in trailers
            status, _, details, _ = await raw_open(other, b"")
            assert status == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await channel.close()
            await other.close()


async def test_the_dendrite_opens_a_session_once_announced_and_signs_before() -> None:
    async with serve_axon(dummy_forward) as h:
        auto = Dendrite(KeypairWallet.generate())
        off = Dendrite(KeypairWallet.generate(), sessions="off")
        required = Dendrite(KeypairWallet.generate(), sessions="required")
        try:
            for dendrite in (auto, off, required):
                for i in range(3):
                    result = await dendrite.call(h.info, Dummy(input=i), timeout=5, deserialize=False)
                    assert (result.dendrite.status_code, result.output) == (200, 2 * i), result.dendrite.status_message
            many = await asyncio.gather(*(auto.call(h.info, Dummy(input=i), timeout=5) for i in range(150)))
            assert [m.output for m in many] == [2 * i for i in range(150)]
        finally:
            for dendrite in (auto, off, required):
                await dendrite.aclose()
        # auto: the first call signed (it learns the announcement), the rest by one session;
        # off: every call signed; required: a session before the first call.
        assert requests(h.axon, "legacy") == 1 + 3
        assert requests(h.axon, "session") == 2 + 150 + 3
        assert opens(h.axon) == 2
    with pytest.raises(ValueError, match="sessions must be one of"):
        Dendrite(sessions="always")


async def test_a_replayed_session_call_is_refused(session_axon: Any) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    metadata = session_metadata(session, 1, BODY_7)
    status, reply, _, trailers = await call(channel, DUMMY, BODY_7, metadata)
    assert (status, reply) == (grpc.StatusCode.OK, b"\x08\x07\x10\x0e")
    status, _, details, trailers = await call(channel, DUMMY, BODY_7, metadata)
    assert (status, details) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "Not Verified with error: Session counter already used (rule R27)",
    )
    assert trailers["bt_header_axon_status_code"] == "401" and "bt_header_axon_signature" not in trailers


async def test_a_reused_counter_is_refused_even_with_a_new_mac(session_axon: Any) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    assert (await call(channel, DUMMY, BODY_7, session_metadata(session, 5, BODY_7)))[0] == grpc.StatusCode.OK
    status, _, details, _ = await call(channel, DUMMY, BODY_8, session_metadata(session, 5, BODY_8))
    assert (status, details) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "Not Verified with error: Session counter already used (rule R27)",
    )
    # Counters below the highest are still accepted once (calls overtaking each other).
    for counter in (4, 1, 3):
        assert (await call(channel, DUMMY, BODY_8, session_metadata(session, counter, BODY_8)))[0] == grpc.StatusCode.OK
    status, _, details, _ = await call(channel, DUMMY, BODY_8, session_metadata(session, 0, BODY_8))
    assert details == "Not Verified with error: Session counter must be at least 1 (rule R27)"


async def test_a_counter_below_the_window_is_refused(session_axon: Any) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    assert (await call(channel, DUMMY, BODY_7, session_metadata(session, 2000, BODY_7)))[0] == grpc.StatusCode.OK
    status, _, details, _ = await call(channel, DUMMY, BODY_7, session_metadata(session, 2000 - 1025, BODY_7))
    assert (status, details) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "Not Verified with error: Session counter is below the window (rule R27)",
    )
    status, *_ = await call(channel, DUMMY, BODY_7, session_metadata(session, 2000 - 1024, BODY_7))
    assert status == grpc.StatusCode.OK  # the oldest counter the window holds
    status, _, details, _ = await call(channel, DUMMY, BODY_7, session_metadata(session, 10**6 + 1, BODY_7))
    assert details == "Not Verified with error: Session call limit reached; open a new one (rule R27)"


async def test_a_tampered_call_is_refused(session_axon: Any) -> None:
    """The MAC covers the body, the method, the timeout and the counter: a call altered in any
    of them is refused, and the refusal burns nothing (the genuine call still goes through)."""
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    mismatch = "Not Verified with error: Session MAC mismatch (rule R27)"
    tampered = [
        (DUMMY, BODY_8, session_metadata(session, 1, BODY_8, mac_body=BODY_7)),  # other body
        (PING, b"", session_metadata(session, 1, b"", method=PING, mac_method=DUMMY, mac_body=b"")),  # other method
        (DUMMY, BODY_7, session_metadata(session, 1, BODY_7, timeout="60.0", mac_timeout="5.0")),  # other timeout
        (
            DUMMY,
            BODY_7,
            [(k, "2" if k == "axon-session-counter" else v) for k, v in session_metadata(session, 1, BODY_7)],
        ),
        (
            DUMMY,
            BODY_7,
            [
                (k, v[:-1] + ("0" if v[-1] != "0" else "1") if k == "axon-session-mac" else v)
                for k, v in session_metadata(session, 1, BODY_7)
            ],
        ),
    ]
    for method, body, metadata in tampered:
        status, _, details, trailers = await call(channel, method, body, metadata)
        assert (status, details) == (grpc.StatusCode.UNAUTHENTICATED, mismatch), method
        assert "bt_header_axon_signature" not in trailers
    other = await opened(channel, h.info.hotkey)  # another session's key does not pass for this one
    forged = [(k, other.id if k == "axon-session" else v) for k, v in session_metadata(session, 1, BODY_7)]
    assert (await call(channel, DUMMY, BODY_7, forged))[2] == mismatch
    status, reply, _, _ = await call(channel, DUMMY, BODY_7, session_metadata(session, 1, BODY_7))
    assert (status, reply) == (grpc.StatusCode.OK, b"\x08\x07\x10\x0e")


async def test_an_expired_session_is_refused_and_the_dendrite_reopens() -> None:
    async with serve_axon(dummy_forward, sessions=SessionPolicy(lifetime_s=1)) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        dendrite = Dendrite(KeypairWallet.generate(), sessions="required")
        try:
            session = await opened(channel, h.info.hotkey)
            first = await dendrite.call(h.info, Dummy(input=1), timeout=5, deserialize=False)
            assert first.dendrite.status_code == 200
            kept = next(iter(next(iter(dendrite.grpc.sessions._states.values())).values())).session
            kept.expires += 3600  # the client thinks it fresh: the axon's refusal is what renews it
            await asyncio.sleep(1.2)
            status, _, details, _ = await call(channel, DUMMY, BODY_7, session_metadata(session, 1, BODY_7))
            assert (status, details) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "Not Verified with error: Session expired; open a new one (rule R27)",
            )
            again = await dendrite.call(h.info, Dummy(input=2), timeout=5, deserialize=False)
            assert (again.dendrite.status_code, again.output) == (200, 4), again.dendrite.status_message
            assert again.dendrite.uuid != first.dendrite.uuid  # a new session's id
            # A session the axon dropped (evicted, or a restart) is renewed the same way, once.
            h.axon.sessions.table.drop(h.axon.sessions.table.get(again.dendrite.uuid))
            third = await dendrite.call(h.info, Dummy(input=3), timeout=5, deserialize=False)
            assert third.dendrite.status_code == 200 and third.dendrite.uuid not in (
                first.dendrite.uuid,
                again.dendrite.uuid,
            )
            assert requests(h.axon, "session", "4xx") == 3  # the expired (twice) and the dropped
        finally:
            await dendrite.aclose()
            await channel.close()


async def test_hooks_see_the_sessions_hotkey() -> None:
    seen: list[tuple[str, Any, Any, Any]] = []

    def blacklist(synapse: Dummy) -> tuple[bool, str]:
        d = synapse.dendrite
        seen.append(("blacklist", d.hotkey, d.uuid, d.nonce))
        return synapse.input == 13, "13"

    def priority(synapse: Dummy) -> float:
        d = synapse.dendrite
        seen.append(("priority", d.hotkey, d.uuid, d.nonce))
        return 1.0

    async with serve_axon({"forward_fn": dummy_forward, "blacklist_fn": blacklist, "priority_fn": priority}) as h:
        keypair = Keypair.generate()
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        try:
            session = await opened(channel, h.info.hotkey, keypair)
            assert (await call(channel, DUMMY, BODY_7, session_metadata(session, 3, BODY_7)))[0] == grpc.StatusCode.OK
            status, _, details, trailers = await call(
                channel, DUMMY, b"\x08\x0d", session_metadata(session, 4, b"\x08\x0d")
            )
        finally:
            await channel.close()
    assert seen[:2] == [
        ("blacklist", keypair.ss58_address, session.id, 3),
        ("priority", keypair.ss58_address, session.id, 3),
    ]
    assert seen[2] == ("blacklist", keypair.ss58_address, session.id, 4)
    assert (status, details) == (grpc.StatusCode.PERMISSION_DENIED, "Forbidden. Key is blacklisted: 13.")
    assert trailers.get("bt_header_axon_signature")  # after the MAC, refusals are signed as ever


async def test_a_signed_answer_to_a_session_call_names_the_counter_and_the_session() -> None:
    async with serve_axon(dummy_forward, sign_answers=True) as h:
        dendrite = Dendrite(KeypairWallet.generate(), sessions="required", verify_response=True)
        try:
            result = await dendrite.call(h.info, Dummy(input=5), timeout=5, deserialize=False)
        finally:
            await dendrite.aclose()
    assert (result.dendrite.status_code, result.output) == (200, 10), result.dendrite.status_message
    assert result.dendrite.nonce == 1 and len(result.dendrite.uuid) == 41


async def test_a_forged_mac_flood_is_refused_without_any_signature_work(
    session_axon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    signed, verified = count_crypto(monkeypatch, h.axon)

    async def forged(counter: int) -> tuple[grpc.StatusCode, str, dict[str, str]]:
        metadata = [
            (k, os.urandom(32).hex() if k == "axon-session-mac" else v)
            for k, v in session_metadata(session, counter, BODY_7)
        ]
        status, _, details, trailers = await call(channel, DUMMY, BODY_7, metadata)
        return status, details, trailers

    answers = await asyncio.gather(*(forged(c) for c in range(1, 201)))
    assert {(a[0], a[1]) for a in answers} == {
        (grpc.StatusCode.UNAUTHENTICATED, "Not Verified with error: Session MAC mismatch (rule R27)")
    }
    assert not any("bt_header_axon_signature" in a[2] for a in answers)
    assert (verified, signed) == ([], [])
    # The session still works: the forgeries burned no counter.
    assert (await call(channel, DUMMY, BODY_7, session_metadata(session, 1, BODY_7)))[0] == grpc.StatusCode.OK


async def test_the_dendrite_signs_when_sessions_do_not_stick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a balancer spreading one connection's calls over hosts every session call lands
    where the session is unknown: after a new session is refused too, the call is signed, and
    the axon gets signed calls for a while (``auto``); ``required`` fails the call."""
    async with serve_axon(dummy_forward) as h:
        table = h.axon.sessions.table
        monkeypatch.setattr(table, "add", lambda *args, **kwargs: None)  # accepted, never held
        auto = Dendrite(KeypairWallet.generate())
        required = Dendrite(KeypairWallet.generate(), sessions="required")
        try:
            results = [await auto.call(h.info, Dummy(input=i), timeout=5, deserialize=False) for i in range(4)]
            failed = await required.call(h.info, Dummy(input=1), timeout=5, deserialize=False)
        finally:
            await auto.aclose()
            await required.aclose()
        assert [(r.dendrite.status_code, r.output) for r in results] == [(200, 0), (200, 2), (200, 4), (200, 6)]
        assert (failed.dendrite.status_code, failed.dendrite.status_message) == (
            401,
            "Not Verified with error: Unknown session; open a new one (rule R27)",
        )
        # auto: call 1 signed; call 2 refused twice by session, then signed; calls 3-4 signed.
        assert requests(h.axon, "legacy") == 4
        assert requests(h.axon, "session", "4xx") == 2 + 3
        assert opens(h.axon) == 2 + 3


async def test_a_stream_goes_by_the_session_too() -> None:
    from .test_streaming import Legacy, collect, legacy_forward

    async with serve_axon(legacy_forward) as h:
        dendrite = Dendrite(KeypairWallet.generate(), sessions="required")
        try:
            items = await collect(dendrite.call_stream(h.info, Legacy(n=3), deserialize=False))
            h.axon.sessions.table.drop(h.axon.sessions.table.get(items[-1].dendrite.uuid))  # as if evicted
            again = await collect(dendrite.call_stream(h.info, Legacy(n=2), deserialize=False))
        finally:
            await dendrite.aclose()
        assert again[-1].dendrite.status_code == 200 and len(again) == 3, again[-1].dendrite.status_message
        assert again[-1].dendrite.uuid != items[-1].dendrite.uuid and opens(h.axon) == 2
        final = items[-1]
        assert final.dendrite.status_code == 200 and len(items) == 4, final.dendrite.status_message
        assert final.dendrite.nonce == 1 and len(final.dendrite.uuid) == 41  # the counter, the session id
        counted = samples(h.axon)
        for status_class, count in (("2xx", 2), ("4xx", 1)):  # the refusal of the dropped session
            labels = (
                ("scheme", "session"),
                ("status_class", status_class),
                ("synapse", "Legacy"),
                ("transport", "grpc"),
            )
            assert counted[("axon_requests_total", labels)] == count


def test_the_threat_model_names_tests_that_exist() -> None:
    """docs/SESSIONS.md: every test its threat table names exists (in the session tests or the
    module it names), and every threat has one."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent
    page = (root.parent / "docs" / "SESSIONS.md").read_text()
    table = page[page.index("## Threat model") : page.index("### Where session state lives")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| threat")]
    assert len(rows) >= 14
    sources = "".join(
        (root / name).read_text()
        for name in ("test_sessions.py", "test_session_open.py", "test_session_workers.py", "test_vectors.py")
    )
    for row in rows:
        named = re.findall(r"`(?:[\w.]+::)?(test_\w+)`", row)
        assert named, row
        for test in named:
            assert re.search(rf"^(async )?def {test}\(", sources, flags=re.M), test


async def test_the_dendrite_renews_a_session_before_it_ends() -> None:
    """Rekeying: a session within its renewal margin of the end (a tenth of a 1 s lifetime here)
    is replaced by a new one before the call, so no call is refused for it."""
    async with serve_axon(dummy_forward, sessions=SessionPolicy(lifetime_s=1)) as h:
        dendrite = Dendrite(KeypairWallet.generate(), sessions="required")
        try:
            first = await dendrite.call(h.info, Dummy(input=1), timeout=5, deserialize=False)
            await asyncio.sleep(0.95)
            second = await dendrite.call(h.info, Dummy(input=2), timeout=5, deserialize=False)
        finally:
            await dendrite.aclose()
        assert (first.dendrite.status_code, second.dendrite.status_code) == (200, 200)
        assert first.dendrite.uuid != second.dendrite.uuid and second.dendrite.nonce == 1
        assert (opens(h.axon), requests(h.axon, "session", "4xx")) == (2, 0)


async def test_session_keys_of_the_wrong_shape_are_refused(session_axon: Any) -> None:
    h, channel = session_axon
    session = await opened(channel, h.info.hotkey)
    good = dict(session_metadata(session, 1, BODY_7))
    cases = [
        (
            {"axon-session-counter": "1" * 21},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Improperly formatted request. axon-session-counter is longer than 20 characters (rule R4)",
        ),
        (
            {"axon-session-counter": "-1"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Improperly formatted request. axon-session-counter must be a non-negative decimal integer (rule R4)",
        ),
        (
            {"axon-session": "x" * 65},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Improperly formatted request. axon-session is longer than 64 characters (rule R4)",
        ),
        (
            {"axon-session-mac": "0" * 65},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Improperly formatted request. axon-session-mac is longer than 64 characters (rule R4)",
        ),
        (
            {"axon-session-counter": None},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Missing session counter (rule R27)",
        ),
        (
            {"axon-session-mac": None},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Missing session MAC (rule R27)",
        ),
        (
            {"axon-session": ""},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Missing session id (rule R27)",
        ),
    ]
    for change, status, details in cases:
        metadata = {**good, **change}
        sent = [(k, v) for k, v in metadata.items() if v is not None]
        assert (await call(channel, DUMMY, BODY_7, sent))[:3:2] == (status, details), change
    assert (await call(channel, DUMMY, BODY_7, list(good.items())))[0] == grpc.StatusCode.OK


def test_sessions_are_turned_off_by_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from axon_grpc import Axon

    assert Axon(edge=False).sessions is not None  # on by default
    assert Axon(edge=False, config=Axon.config(["--axon.sessions", "off"])).sessions is None
    monkeypatch.setenv("BT_AXON_SESSIONS", "off")
    off = Axon(edge=False)
    assert off.sessions is None and off.grpc_codec.trailers == ()
    assert Axon(edge=False, sessions=True).sessions is not None  # the argument wins
    with pytest.raises(AssertionError, match="sessions must be 'on' or 'off'"):
        Axon(edge=False, config=Axon.config(["--axon.sessions", "sometimes"]))


async def test_one_session_serves_calls_from_several_threads() -> None:
    """``Dendrite.query`` from four threads at once (its private loop) and a ClientSession stamped
    from four threads: every counter is taken once."""
    import concurrent.futures

    async with serve_axon(dummy_forward) as h:
        dendrite = Dendrite(KeypairWallet.generate(), sessions="required")
        try:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                jobs = [
                    pool.submit(dendrite.query, h.info, Dummy(input=i), timeout=10, deserialize=False)
                    for i in range(40)
                ]
                results = await asyncio.gather(*(asyncio.wrap_future(job) for job in jobs))
        finally:
            await asyncio.to_thread(dendrite.close_session)
        assert {r.dendrite.status_code for r in results} == {200}
        assert len({r.dendrite.uuid for r in results}) == 1
        assert sorted(r.dendrite.nonce for r in results) == list(range(1, 41))
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        try:
            session = await opened(channel, h.info.hotkey)
        finally:
            await channel.close()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        counters = list(pool.map(lambda _: session.stamp(DUMMY, BODY_7, 5.0)[0], range(2000)))
    assert sorted(counters) == list(range(1, 2001))
