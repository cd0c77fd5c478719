"""Attacks on ``axon-session/1`` (docs/SESSIONS.md), each next to the case it must not break: the
open's decoder, a session call's metadata, the axon's session state, identity confusion, and a
hostile axon against the Dendrite. Real grpc.aio servers on loopback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from axon_grpc import Dendrite, KeypairWallet
from axon_grpc.auth import session_wire as wire

from .hostile_axon import Hostile, serve_hostile
from .support import Dummy

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


async def test_an_axon_refusing_every_session_call_with_the_reopen_words_gets_one_retry_each() -> None:
    hostile = Hostile(call_refusal=(grpc.StatusCode.UNAUTHENTICATED, REOPEN))
    async with serve_hostile(hostile) as h, Dendrite(KeypairWallet.generate()) as dendrite:
        await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False)  # learns the announcement
        results = [await dendrite.call(h.info, Dummy(input=7), timeout=5, deserialize=False) for _ in range(5)]
    assert {(r.dendrite.status_code, r.dendrite.status_message) for r in results} == {(401, REOPEN)}
    # Each call: refused, a new session, one retry refused (that session is the next call's).
    assert hostile.opens == 1 + 5
    assert len(hostile.calls) == 1 + 2 * 5
