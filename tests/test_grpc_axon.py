"""End to end over real gRPC on loopback: round trips, wire format, and every refusal."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time

import grpc
import pytest

from axon_grpc import Keypair, KeypairWallet, Synapse, VerifyPolicy
from axon_grpc.auth.legacy import response_message
from axon_grpc.schema import schema_for
from axon_grpc.testing import AxonHarness, serve_axon

from .support import Boom, Dummy, RawCaller, Said, boom_forward, dummy_blacklist, dummy_forward, said_forward


class Slow(Synapse):
    seconds: float = 0.0


async def slow_forward(synapse: Slow) -> Slow:
    await asyncio.sleep(synapse.seconds)
    return synapse


@pytest.fixture
async def harness():
    attachments = [
        {"forward_fn": dummy_forward, "blacklist_fn": dummy_blacklist},
        boom_forward,
        slow_forward,
        said_forward,
    ]
    async with serve_axon(*attachments) as h:
        yield h


@pytest.fixture
async def raw(harness: AxonHarness):
    caller = RawCaller(f"127.0.0.1:{harness.axon.port}", harness.axon.wallet.hotkey.ss58_address)
    yield caller
    await caller.close()


async def assert_still_serving(harness: AxonHarness) -> None:
    result = await harness.call(Dummy(input=5))
    assert result.dendrite.status_code == 200
    assert result.output == 10


async def test_round_trip_fills_status_and_terminal_info(harness: AxonHarness) -> None:
    result = await harness.call(Dummy(input=3))
    assert result.output == 6
    assert result.is_success and not result.is_failure
    assert result.dendrite.status_code == 200
    assert result.dendrite.status_message == "Success"
    assert result.dendrite.process_time > 0
    axon = result.axon
    assert axon.status_code == 200 and axon.status_message == "Success"
    assert axon.hotkey == harness.axon.wallet.hotkey.ss58_address
    assert axon.uuid == harness.axon.uuid
    assert axon.version == harness.axon.version
    assert axon.signature is None  # as the legacy axon: successes are not signed


async def test_error_answers_carry_the_axons_signature(harness: AxonHarness) -> None:
    refused = await harness.call(Boom(text="x"))
    axon = refused.axon
    assert refused.dendrite.status_code == 500 and axon.status_code == 500
    # The signature covers {nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}.
    message = response_message(axon.nonce, harness.dendrite.keypair.ss58_address, axon.hotkey, axon.uuid)
    assert Keypair.from_ss58(axon.hotkey).verify(message, axon.signature)


class Doubler(Dummy):
    def deserialize(self) -> int | None:
        return self.output


def doubler_forward(synapse: Doubler) -> Doubler:
    synapse.output = synapse.input * 2
    return synapse


async def test_deserialize_returns_deserialized_value(harness: AxonHarness) -> None:
    harness.axon.attach(forward_fn=doubler_forward)
    value = await harness.dendrite.forward(harness.info, Doubler(input=4), deserialize=True)
    assert value == 8


async def test_hand_encoded_request_gets_field_2_back(harness: AxonHarness, raw: RawCaller) -> None:
    body = b"\x08\x07"  # Dummy(input=7): field 1, varint 7
    status, response, _, trailing = await raw.call("Dummy", body)
    assert status == grpc.StatusCode.OK
    assert response == b"\x08\x07\x10\x0e"  # input=7, output (field 2) = 14
    assert trailing["bt_header_axon_status_code"] == "200"
    assert trailing["bt_header_axon_hotkey"] == harness.axon.wallet.hotkey.ss58_address


async def test_async_forward_and_ping(harness: AxonHarness) -> None:
    result = await harness.call(Slow(seconds=0.01))
    assert result.dendrite.status_code == 200
    ping = await harness.call(Synapse())
    assert ping.dendrite.status_code == 200 and ping.axon.status_code == 200


async def test_forward_to_a_list_of_axons_runs_concurrently() -> None:
    inside = 0
    overlapped = asyncio.Event()

    async def meeting_forward(synapse: Slow) -> Slow:
        nonlocal inside
        inside += 1
        if inside == 2:
            overlapped.set()  # both axons are inside their forward at once
        await asyncio.wait_for(overlapped.wait(), 5)
        return synapse

    async with serve_axon(meeting_forward) as a, serve_axon(meeting_forward) as b:
        results = await a.dendrite.forward([a.info, b.info], Slow(seconds=0), deserialize=False)
    assert [r.dendrite.status_code for r in results] == [200, 200]
    assert {r.axon.hotkey for r in results} == {a.info.hotkey, b.info.hotkey}


async def test_ed25519_client_is_accepted() -> None:
    async with serve_axon(dummy_forward, client_wallet=KeypairWallet.generate("ed25519")) as h:
        result = await h.call(Dummy(input=2))
    assert result.dendrite.status_code == 200 and result.output == 4


async def test_unknown_synapse_is_unimplemented_404(harness: AxonHarness, raw: RawCaller) -> None:
    status, _, details, trailing = await raw.call("NotAttached", b"")
    assert status == grpc.StatusCode.UNIMPLEMENTED
    assert (
        details
        == "Synapse name 'NotAttached' not found. Available synapses ['Synapse', 'Dummy', 'Boom', 'Slow', 'Said'] "
        "(rule R1)"
    )
    assert trailing["bt_header_axon_status_code"] == "404"

    class NotAttached(Synapse):
        pass

    result = await harness.call(NotAttached())
    assert result.dendrite.status_code == 404
    await assert_still_serving(harness)


@pytest.mark.parametrize(
    "overrides, code, fragment",
    [
        (
            {"bt_header_dendrite_hotkey": None},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: No SS58 formatted address or public key provided.",
        ),
        ({"bt_header_dendrite_nonce": None}, grpc.StatusCode.UNAUTHENTICATED, "Not Verified with error: Missing Nonce"),
        (
            {"bt_header_dendrite_signature": None},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Missing Signature",
        ),
        (
            {"bt_header_dendrite_nonce": "soon"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Improperly formatted request. bt_header_dendrite_nonce must be a non-negative decimal integer",
        ),
        (
            {"timeout": "twelve"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Improperly formatted request. timeout must be a number of seconds",
        ),
        (
            {"bt_header_dendrite_hotkey": "5CcfgLpA3ZfFZpHVsMjmhxuake347N5RciPndJ7RW48hQxV2"},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Invalid hotkey: invalid SS58 address: checksum mismatch",
        ),
        (
            {"bt_header_dendrite_hotkey": "not-an-address"},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Invalid hotkey: invalid SS58 address",
        ),
        (
            {"bt_header_dendrite_signature": "0xzz"},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Malformed signature: signature is not hex",
        ),
        (
            {"bt_header_dendrite_signature": "0x" + "ab" * 10},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Malformed signature: signature must be 64 bytes",
        ),
        (
            {"bt_header_dendrite_signature": "0x" + "ab" * 64},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Signature mismatch",
        ),
        (
            {"bt_header_dendrite_crypto": "rsa"},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Unsupported crypto",
        ),
        (
            {"bt_header_dendrite_version": "7001000"},
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Dendrite version predates 7.2.0",
        ),
    ],
)
async def test_bad_metadata_is_refused_with_a_clear_message(
    harness: AxonHarness, raw: RawCaller, overrides: dict, code: grpc.StatusCode, fragment: str
) -> None:
    body = b"\x08\x03"
    status, response, details, trailing = await raw.call("Dummy", body, raw.metadata(body, **overrides))
    assert status == code
    assert response is None
    assert details.startswith(fragment) or fragment in details
    assert trailing["bt_header_axon_status_code"] == str(
        {grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.INVALID_ARGUMENT: 400}[code]
    )
    await assert_still_serving(harness)


async def test_garbage_body_is_invalid_argument(harness: AxonHarness, raw: RawCaller) -> None:
    body = b"\xff\xff\xff\xff"
    status, _, details, _ = await raw.call("Dummy", body)
    assert status == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("Improperly formatted request. Could not parse body")
    await assert_still_serving(harness)


async def test_body_changed_after_signing_is_a_hash_mismatch(harness: AxonHarness, raw: RawCaller) -> None:
    metadata = raw.metadata(b"\x08\x03")
    status, _, details, trailing = await raw.call("Dummy", b"\x08\x04", metadata)
    assert status == grpc.StatusCode.INVALID_ARGUMENT
    # what is wrong and the rule, never the two hashes
    assert details == (
        "body hash does not match: computed_body_hash is the SHA3-256 of the method path, "
        "a newline and the message bytes as sent (rule R7)"
    )
    assert dict(metadata)["computed_body_hash"] not in details
    assert trailing["bt_header_axon_status_code"] == "400"


async def test_replayed_request_is_refused(harness: AxonHarness, raw: RawCaller) -> None:
    body = b"\x08\x03"
    metadata = raw.metadata(body)
    first = await raw.call("Dummy", body, metadata)
    assert first[0] == grpc.StatusCode.OK
    status, _, details, _ = await raw.call("Dummy", body, metadata)
    assert status == grpc.StatusCode.UNAUTHENTICATED
    assert details == "Not Verified with error: Nonce is too old, a newer one was last processed (rule R14)"
    await assert_still_serving(harness)


async def test_stale_and_future_nonces_are_refused(harness: AxonHarness, raw: RawCaller) -> None:
    body = b"\x08\x03"
    stale = time.time_ns() - 18 * 10**9
    status, _, details, _ = await raw.call("Dummy", body, raw.metadata(body, nonce=stale))
    assert status == grpc.StatusCode.UNAUTHENTICATED
    assert re.fullmatch(
        r"Not Verified with error: Nonce is too old: acceptable delta is 16\.00 seconds "
        r"but request was 18\.\d\d seconds old \(rule R13\)",
        details,
    )
    future = time.time_ns() + 120 * 10**9
    status, _, details, _ = await raw.call("Dummy", body, raw.metadata(body, nonce=future))
    assert status == grpc.StatusCode.UNAUTHENTICATED
    assert details == "Not Verified with error: Nonce is too far in the future (rule R13)"
    await assert_still_serving(harness)


async def test_client_timeout_widens_the_window_only_up_to_the_cap(harness: AxonHarness, raw: RawCaller) -> None:
    body = b"\x08\x03"
    old = time.time_ns() - 200 * 10**9  # would pass with the legacy rule and timeout=1000
    status, _, details, _ = await raw.call("Dummy", body, raw.metadata(body, nonce=old, timeout="1000"))
    assert status == grpc.StatusCode.UNAUTHENTICATED
    assert "acceptable delta is 64.00 seconds" in details


async def test_signature_for_another_axon_is_refused(harness: AxonHarness) -> None:
    other = RawCaller(f"127.0.0.1:{harness.axon.port}", Keypair.generate().ss58_address)
    try:
        status, _, details, _ = await other.call("Dummy", b"\x08\x03")
    finally:
        await other.close()
    assert status == grpc.StatusCode.UNAUTHENTICATED
    assert details == "Not Verified with error: Signature mismatch (rule R9)"


async def test_blacklist_sees_the_signed_body_never_the_input_obj_header(harness: AxonHarness, raw: RawCaller) -> None:
    """The fixture's blacklist refuses ``input == 13``: it must see the signed body's value."""
    body = b"\x08\x03"
    forged = raw.metadata(body, bt_header_input_obj_input=base64.b64encode(b"13").decode())  # unsigned
    status, response, _, _ = await raw.call("Dummy", body, forged)
    assert status == grpc.StatusCode.OK and response == b"\x08\x03\x10\x06"
    body = b"\x08\x0d"
    status, _, details, trailing = await raw.call("Dummy", body, raw.metadata(body))
    assert status == grpc.StatusCode.PERMISSION_DENIED
    assert details == "Forbidden. Key is blacklisted: input 13 is blacklisted."
    assert trailing["bt_header_axon_status_code"] == "403"
    result = await harness.call(Dummy(input=13))
    assert result.dendrite.status_code == 403


async def test_forward_exception_is_500_with_an_id_and_no_detail(harness: AxonHarness, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="axon_grpc"):
        result = await harness.call(Boom(text="x"))
    assert result.dendrite.status_code == 500
    message = result.dendrite.status_message
    match = re.fullmatch(r"Internal Server Error #([0-9a-f-]{36})", message)
    assert match, message
    assert "secret" not in message
    # The traceback is in the server log, under the same id.
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    await assert_still_serving(harness)


async def test_synapse_exception_message_is_shown(harness: AxonHarness) -> None:
    result = await harness.call(Said())
    assert result.dendrite.status_code == 500
    assert result.dendrite.status_message == "the miner says no"


async def test_slow_forward_times_out_at_the_client(harness: AxonHarness) -> None:
    result = await harness.call(Slow(seconds=3.0), timeout=0.5)
    assert result.is_timeout
    assert result.dendrite.status_code == 408
    await assert_still_serving(harness)


async def test_server_enforces_synapse_timeout(harness: AxonHarness, raw: RawCaller) -> None:
    body = schema_for(Slow).to_bytes({"seconds": 2.0})
    status, _, details, trailing = await raw.call(
        "Slow", body, raw.metadata(body, method="Slow", timeout="0.3"), timeout=10
    )
    assert status == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details == "Response timeout after: 0.3s"
    assert trailing["bt_header_axon_status_code"] == "408"


async def test_custom_verify_runs_after_the_signature_check() -> None:
    seen: list[str] = []

    def verify(synapse: Dummy) -> None:
        seen.append(synapse.dendrite.hotkey)
        if synapse.dendrite.hotkey != allowed.ss58_address:
            raise ValueError("not on the allow list")

    allowed = Keypair.generate()
    async with serve_axon(
        {"forward_fn": dummy_forward, "verify_fn": verify}, client_wallet=KeypairWallet(allowed)
    ) as h:
        ok = await h.call(Dummy(input=1))
        assert ok.dendrite.status_code == 200
        other = await h.dendrite.__class__(KeypairWallet.generate()).call(h.info, Dummy(input=1), deserialize=False)
        assert other.dendrite.status_code == 401
        assert re.fullmatch(r"Not Verified #[0-9a-f-]{36}", other.dendrite.status_message)  # nothing of the miner's
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.axon.wallet.hotkey.ss58_address, allowed)
        body = b"\x08\x01"
        status, _, details, _ = await raw.call("Dummy", body, raw.metadata(body, bt_header_dendrite_signature=None))
        await raw.close()
    assert status == grpc.StatusCode.UNAUTHENTICATED and details.endswith("Missing Signature (rule R3)")
    assert len(seen) == 2  # the unsigned request never reached verify_fn


async def test_legacy_versions_allowed_when_the_operator_says_so() -> None:
    policy = VerifyPolicy(allow_legacy_versions=True)
    async with serve_axon(dummy_forward, verify_policy=policy) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.axon.wallet.hotkey.ss58_address)
        body = b"\x08\x01"
        status, *_ = await raw.call("Dummy", body, raw.metadata(body, bt_header_dendrite_version="7001000"))
        await raw.close()
    assert status == grpc.StatusCode.OK


async def test_one_debug_line_per_request(harness: AxonHarness, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="axon_grpc"):
        await harness.call(Dummy(input=1))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("grpc Dummy")]
    assert len(lines) == 1
    assert f"from {harness.dendrite.keypair.ss58_address} -> 200 in" in lines[0]
