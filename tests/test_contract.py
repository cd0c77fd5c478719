"""What the written contract (contract.py, the emitted .proto, docs/CLIENTS.md) promises a
client in another language, checked against a running axon with hand-built requests."""

from __future__ import annotations

import asyncio
import hashlib

import grpc
import pytest

from axon_grpc import Keypair
from axon_grpc.auth.legacy import response_message
from axon_grpc.testing import serve_axon

from .support import RawCaller, dummy_forward

DUMMY_7 = b"\x08\x07"  # Dummy(input=7): field 1, varint 7


@pytest.fixture
async def axon():
    async with serve_axon(dummy_forward) as h:
        caller = RawCaller(h.info.ip_str(), h.info.hotkey)
        yield h, caller
        await caller.close()


async def test_the_hotkey_is_learnt_from_an_unsigned_ping(axon) -> None:
    """docs/CLIENTS.md: call the ping method with no metadata, read bt_header_axon_hotkey."""
    h, caller = axon
    channel = grpc.aio.insecure_channel(h.info.ip_str())
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary("/axon.v1.Axon/Synapse")(b"", timeout=5)
    finally:
        await channel.close()
    trailers = dict(info.value.trailing_metadata())
    hotkey = trailers["bt_header_axon_hotkey"]
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert hotkey == h.axon.wallet.hotkey.ss58_address == h.info.hotkey
    # the refusal is signed by that hotkey (no dendrite hotkey was sent)
    message = response_message(int(trailers["bt_header_axon_nonce"]), None, hotkey, trailers["bt_header_axon_uuid"])
    assert Keypair.from_ss58(hotkey).verify(message, trailers["bt_header_axon_signature"])
    # and a signed ping to that hotkey then succeeds
    status, body, _, trailers = await caller.call("Synapse", b"")
    assert status is grpc.StatusCode.OK and body == b"" and trailers["bt_header_axon_hotkey"] == hotkey


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("bt_header_dendrite_hotkey", "No SS58 formatted address or public key provided."),  # the SDK 10.5 axon's words
        ("bt_header_dendrite_nonce", "Missing Nonce"),
        ("bt_header_dendrite_uuid", "Missing Uuid"),
        ("bt_header_dendrite_signature", "Missing Signature"),
        ("computed_body_hash", "Missing Body Hash"),
    ],
)
async def test_a_missing_required_key_is_reported_as_missing(axon, key: str, reason: str) -> None:
    _, caller = axon
    status, _, details, _ = await caller.call("Dummy", DUMMY_7, caller.metadata(DUMMY_7, **{key: None}))
    assert (status, details) == (grpc.StatusCode.UNAUTHENTICATED, f"Not Verified with error: {reason} (rule R3)")


async def test_signature_hex_may_be_upper_case_and_unprefixed(axon) -> None:
    _, caller = axon
    for form in (str.upper, lambda s: s[2:], lambda s: "0X" + s[2:].upper()):
        metadata = dict(caller.metadata(DUMMY_7))
        metadata["bt_header_dendrite_signature"] = form(metadata["bt_header_dendrite_signature"])
        status, body, details, _ = await caller.call("Dummy", DUMMY_7, list(metadata.items()))
        assert status is grpc.StatusCode.OK, details
        assert body == b"\x08\x07\x10\x0e"  # input 7, output 14


async def test_body_hash_must_be_lower_case_hex_without_prefix(axon) -> None:
    _, caller = axon
    digest = hashlib.sha3_256(b"/axon.v1.Axon/Dummy\n" + DUMMY_7).hexdigest()
    expected = {
        digest.upper(): "computed_body_hash must be 64 lowercase hex digits (rule R7)",
        "0x" + digest: "Improperly formatted request. computed_body_hash is longer",
    }
    for claimed, refusal in expected.items():
        # signed over the claimed form, so only the body hash rules can refuse it
        status, _, details, _ = await caller.call("Dummy", DUMMY_7, _signed(caller, DUMMY_7, claimed))
        assert status is grpc.StatusCode.INVALID_ARGUMENT and details.startswith(refusal), details


def _signed(caller: RawCaller, body: bytes, body_hash: str) -> list[tuple[str, str]]:
    metadata = dict(caller.metadata(body))
    nonce = metadata["bt_header_dendrite_nonce"]
    message = f"{nonce}.{caller.keypair.ss58_address}.{caller.axon_hotkey}.{caller.uuid}.{body_hash}"
    metadata.update(computed_body_hash=body_hash, bt_header_dendrite_signature=caller.keypair.sign_hex(message))
    return list(metadata.items())


@pytest.mark.parametrize(("timeout", "ok"), [("2.5", True), ("12", True), ("0", False), ("-1", False), ("nan", False)])
async def test_timeout_may_be_a_float_and_must_be_positive(axon, timeout: str, ok: bool) -> None:
    _, caller = axon
    status, _, details, _ = await caller.call("Dummy", DUMMY_7, caller.metadata(DUMMY_7, timeout=timeout))
    assert (status is grpc.StatusCode.OK) is ok, details


async def test_concurrent_calls_may_share_a_uuid_and_each_nonce_counts_once(axon) -> None:
    """Per hotkey:uuid a nonce overtaken by a newer one is still accepted once (the replay
    window); a replay never is; distinct uuids are independent."""
    h, caller = axon
    older, newer = caller.metadata(DUMMY_7), caller.metadata(DUMMY_7)
    assert (await caller.call("Dummy", DUMMY_7, newer))[0] is grpc.StatusCode.OK
    assert (await caller.call("Dummy", DUMMY_7, older))[0] is grpc.StatusCode.OK
    status, _, details, _ = await caller.call("Dummy", DUMMY_7, older)
    assert status is grpc.StatusCode.UNAUTHENTICATED and "a newer one was last processed" in details
    callers = [RawCaller(h.info.ip_str(), h.info.hotkey, caller.keypair) for _ in range(4)]
    try:
        prepared = [c.metadata(DUMMY_7) for c in callers]
        results = await asyncio.gather(
            *(c.call("Dummy", DUMMY_7, m) for c, m in zip(reversed(callers), reversed(prepared)))
        )
    finally:
        await asyncio.gather(*(c.close() for c in callers))
    assert [r[0] for r in results] == [grpc.StatusCode.OK] * 4
