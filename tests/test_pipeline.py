"""``Pipeline.handle(Call) -> Outcome`` driven with no socket at all.

The stage order, what each hook sees, the time-limit policy and the seed's live dicts.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator

import pytest

from axon_grpc import Keypair, StreamingSynapse, SynapseException
from axon_grpc.auth.legacy import grpc_body_hash
from axon_grpc.metrics.observer import GRPC, HTTP
from axon_grpc.schema import schema_for
from axon_grpc.server.call import Call, Outcome
from axon_grpc.testing import build_axon
from axon_grpc.transports.grpc_codec import GRPC_CODEC
from axon_grpc.transports.json_body import JSON_CODEC

from .support import Dummy, dummy_forward

METHOD = "/axon.v1.Axon/Dummy"


class Signer:
    """Signs calls for one axon as a Dendrite would: gRPC over the message bytes, HTTP over the fields."""

    def __init__(self, axon_hotkey: str) -> None:
        self.key = Keypair.generate()
        self.axon_hotkey = axon_hotkey
        self.uuid = "5a0c1d4e-0000-4000-8000-000000000001"

    def headers(self, body_hash: str, **overrides: str) -> dict[str, str]:
        nonce = time.time_ns()
        message = f"{nonce}.{self.key.ss58_address}.{self.axon_hotkey}.{self.uuid}.{body_hash}"
        headers = {
            "bt_header_dendrite_hotkey": self.key.ss58_address,
            "bt_header_dendrite_nonce": str(nonce),
            "bt_header_dendrite_uuid": self.uuid,
            "bt_header_dendrite_signature": self.key.sign_hex(message),
            "computed_body_hash": body_hash,
            "timeout": "12.0",
        }
        headers.update(overrides)
        return headers

    def grpc(self, synapse: Dummy, name: str = "Dummy", **overrides: str) -> Call:
        body = schema_for(type(synapse)).to_bytes(synapse)
        headers = self.headers(grpc_body_hash(f"/axon.v1.Axon/{name}", body), **overrides)
        return Call(
            name=name,
            headers=headers,
            codec=GRPC_CODEC,
            body=body,
            peer_ip="127.0.0.1",
            peer_port=4000,
            path=f"/axon.v1.Axon/{name}",
        )

    def http(self, synapse: Dummy, **overrides: str) -> Call:
        body = json.dumps(synapse.model_dump()).encode()

        async def read() -> bytes:
            return body

        return Call(
            name=type(synapse).__name__,
            headers=self.headers(synapse.body_hash, **overrides),
            codec=JSON_CODEC,
            read_body=read,
            peer_ip="127.0.0.1",
            peer_port=4000,
            path=f"/{type(synapse).__name__}",
        )


def axon_with(*attachments: Any, **kwargs: Any) -> tuple[Any, Signer]:
    axon = build_axon(*attachments, **kwargs)
    return axon, Signer(axon.wallet.hotkey.ss58_address)


async def test_a_call_is_answered_without_any_socket() -> None:
    axon, signer = axon_with(dummy_forward)
    for call in (signer.grpc(Dummy(input=4)), signer.http(Dummy(input=5))):
        outcome = await axon.pipeline.handle(call)
        assert (outcome.status, outcome.message) == (200, "Success")
        assert outcome.synapse.output == 2 * outcome.synapse.input
        info = outcome.synapse.axon
        assert info.status_code == 200 and info.hotkey == axon.wallet.hotkey.ss58_address
        assert outcome.synapse.dendrite.hotkey == signer.key.ss58_address
        assert outcome.endpoint is axon.endpoints["Dummy"]


async def test_refusals_are_outcomes_never_exceptions() -> None:
    axon, signer = axon_with(dummy_forward)
    handle = axon.pipeline.handle
    unknown = await handle(signer.grpc(Dummy(input=1), name="Nope"))
    assert unknown.status == 404 and unknown.endpoint is None
    malformed = await handle(signer.grpc(Dummy(input=1), bt_header_dendrite_nonce="soon"))
    assert malformed.status == 400 and "bt_header_dendrite_nonce" in malformed.message
    forged = await handle(signer.grpc(Dummy(input=1), bt_header_dendrite_signature="0x" + "ab" * 64))
    assert (forged.status, forged.message) == (401, "Not Verified with error: Signature mismatch (rule R9)")
    assert forged.synapse.axon.signature  # errors are signed by the axon
    replayed = signer.grpc(Dummy(input=1))
    assert (await handle(replayed)).ok
    again = await handle(
        Call(name=replayed.name, headers=replayed.headers, codec=GRPC_CODEC, body=replayed.body, path=METHOD)
    )
    assert again.status == 401 and "newer one" in again.message
    call = signer.grpc(Dummy(input=1))
    tampered_body = schema_for(Dummy).to_bytes(Dummy(input=2))
    tampered = await handle(Call(name="Dummy", headers=call.headers, codec=GRPC_CODEC, body=tampered_body, path=METHOD))
    assert tampered.status == 400 and tampered.message.startswith("body hash does not match")


@pytest.mark.parametrize(
    "header, value",
    [
        ("bt_header_dendrite_hotkey", "5" * 51),
        ("bt_header_dendrite_uuid", "u" * 65),
        ("bt_header_dendrite_nonce", "9" * 21),
        ("bt_header_dendrite_version", "9" * 11),
    ],
)
async def test_a_caller_string_past_its_bound_is_400_before_the_signature(header: str, value: str) -> None:
    """Read and bounded once (the credentials); the signature check does not check them again."""
    axon, signer = axon_with(dummy_forward)
    checked: list[str] = []
    verify = axon.pipeline.verifier.verify_legacy

    async def counting(*args: Any, **kwargs: Any) -> None:
        checked.append(header)
        await verify(*args, **kwargs)

    axon.pipeline.verifier.verify_legacy = counting  # type: ignore[method-assign]
    outcome = await axon.pipeline.handle(signer.grpc(Dummy(input=1), **{header: value}))
    assert outcome.status == 400
    assert outcome.message.startswith(f"Improperly formatted request. {header} is longer than")
    assert checked == []  # refused before any signature work
    assert (await axon.pipeline.handle(signer.grpc(Dummy(input=1)))).ok and checked == [header]


async def test_the_signature_is_checked_before_any_hook_runs() -> None:
    seen: list[str] = []

    def blacklist(synapse: Dummy) -> tuple[bool, str]:
        seen.append("blacklist")
        return False, ""

    def priority(synapse: Dummy) -> float:
        seen.append("priority")
        return 1.0

    def verify(synapse: Dummy) -> None:
        seen.append("verify")

    axon, signer = axon_with(
        {"forward_fn": dummy_forward, "blacklist_fn": blacklist, "priority_fn": priority, "verify_fn": verify}
    )
    forged = await axon.pipeline.handle(signer.grpc(Dummy(input=1), bt_header_dendrite_signature="0x" + "cd" * 64))
    assert forged.status == 401 and seen == []
    tampered = signer.grpc(Dummy(input=1))
    tampered.body = schema_for(Dummy).to_bytes(Dummy(input=9))
    assert (await axon.pipeline.handle(tampered)).status == 400 and seen == []
    assert (await axon.pipeline.handle(signer.grpc(Dummy(input=1)))).ok
    assert seen == ["blacklist", "verify", "priority"]


@pytest.mark.parametrize("transport", [GRPC, HTTP])
async def test_hooks_see_the_signed_body_never_an_unsigned_header_copy(transport: str) -> None:
    seen: list[tuple[str, int, str | None]] = []

    def blacklist(synapse: Dummy) -> tuple[bool, str]:
        seen.append(("blacklist", synapse.input, synapse.dendrite.hotkey))
        return False, ""

    def verify(synapse: Dummy) -> None:
        seen.append(("verify", synapse.input, synapse.dendrite.hotkey))

    def priority(synapse: Dummy) -> float:
        seen.append(("priority", synapse.input, synapse.dendrite.hotkey))
        return 1.0

    axon, signer = axon_with(
        {"forward_fn": dummy_forward, "blacklist_fn": blacklist, "priority_fn": priority, "verify_fn": verify}
    )
    build = signer.grpc if transport == GRPC else signer.http
    # "MTM=" is base64 of "13": an unsigned header copy of the field, which no hook may see.
    outcome = await axon.pipeline.handle(build(Dummy(input=6), bt_header_input_obj_input="MTM="))
    assert outcome.ok and outcome.synapse.output == 12
    hotkey = signer.key.ss58_address
    assert seen == [("blacklist", 6, hotkey), ("verify", 6, hotkey), ("priority", 6, hotkey)]


async def test_the_time_limit_is_the_earlier_of_the_deadline_and_synapse_timeout() -> None:
    forward_s = 5.0  # far above the 0.1 s limits: a loaded machine does not reach it

    async def slow(synapse: Dummy) -> Dummy:
        await asyncio.sleep(forward_s)
        return synapse

    axon, signer = axon_with(slow)
    started = time.monotonic()
    short_timeout = await axon.pipeline.handle(signer.grpc(Dummy(input=1), timeout="0.1"))
    assert (short_timeout.status, short_timeout.message) == (408, "Response timeout after: 0.1s")
    call = signer.grpc(Dummy(input=2))  # timeout 12 s, but the caller gives up sooner
    call.deadline = time.monotonic() + 0.1
    short_deadline = await axon.pipeline.handle(call)
    assert short_deadline.status == 408
    assert time.monotonic() - started < forward_s / 2  # neither waited for the forward (0.1 s each)


async def test_an_enforced_deadline_arms_no_timer_of_the_pipeline() -> None:
    """grpc.aio cancels a call at its deadline: the pipeline then leaves the forward alone."""

    async def slow(synapse: Dummy) -> Dummy:
        await asyncio.sleep(0.2)
        synapse.output = 1
        return synapse

    axon, signer = axon_with(slow)
    call = signer.grpc(Dummy(input=1))
    call.deadline, call.deadline_enforced = time.monotonic() + 0.05, True
    outcome = await axon.pipeline.handle(call)  # nobody cancels here: the forward completes
    assert outcome.ok and outcome.synapse.output == 1


class Counting(StreamingSynapse):
    upto: int = 0
    chunk_type = int


async def count(synapse: Counting) -> AsyncIterator[int]:
    for i in range(synapse.upto):
        yield i
    if synapse.upto == 13:
        raise SynapseException("no more after thirteen")


async def counting_outcome(upto: int) -> Outcome:
    """What the pipeline returns for a signed gRPC call of ``Counting(upto)``."""
    axon, signer = axon_with(count)
    body = schema_for(Counting).to_bytes(Counting(upto=upto))
    headers = signer.headers(grpc_body_hash("/axon.v1.Axon/Counting", body))
    call = Call(name="Counting", headers=headers, codec=GRPC_CODEC, body=body, path="/axon.v1.Axon/Counting")
    return await axon.pipeline.handle(call)


async def test_a_stream_outcome_turns_final_when_its_chunks_end() -> None:
    outcome = await counting_outcome(3)
    assert outcome.ok and outcome.stream is not None
    assert [chunk async for chunk in outcome.stream] == [0, 1, 2]
    final = outcome.final
    assert final.status == 200 and final.synapse.axon.status_code == 200


async def test_the_seed_dicts_are_live_views_of_the_endpoints() -> None:
    axon, signer = axon_with(dummy_forward)
    assert axon.forward_fns["Dummy"] is dummy_forward
    assert axon.verify_fns["Dummy"] == axon.default_verify  # no verify_fn of its own
    assert axon.forward_class_types["Dummy"] is Dummy

    def triple(synapse: Dummy) -> Dummy:
        synapse.output = synapse.input * 3
        return synapse

    axon.forward_fns["Dummy"] = triple
    assert (await axon.pipeline.handle(signer.grpc(Dummy(input=2)))).synapse.output == 6
    axon.blacklist_fns["Dummy"] = lambda synapse: (True, "closed")
    refused = await axon.pipeline.handle(signer.grpc(Dummy(input=2)))
    assert (refused.status, refused.message) == (403, "Forbidden. Key is blacklisted: closed.")
    axon.blacklist_fns["Dummy"] = None
    assert (await axon.pipeline.handle(signer.grpc(Dummy(input=2)))).ok
    axon.verify_fns["Dummy"] = axon.default_verify  # "no check of my own": never a second nonce check
    assert axon.endpoints["Dummy"].verify_fn is None
    assert (await axon.pipeline.handle(signer.grpc(Dummy(input=2)))).ok
    with pytest.raises(KeyError):
        axon.forward_fns["Unattached"] = triple
    with pytest.raises(TypeError):
        axon.forward_class_types["Dummy"] = Dummy
    with pytest.raises(TypeError):
        del axon.forward_fns["Dummy"]


async def test_a_replaced_default_verify_runs_after_the_signature_never_instead() -> None:
    from axon_grpc import Axon

    checked: list[int] = []

    class Strict(Axon):
        async def default_verify(self, synapse: Any) -> None:  # the SDK's override shape
            checked.append(synapse.input)
            if synapse.input == 7:
                raise ValueError("seven is unlucky")

    axon = build_axon(dummy_forward)
    strict = Strict(wallet=axon.wallet, ip="127.0.0.1", external_ip="127.0.0.1", port=axon.port)
    strict.attach(forward_fn=dummy_forward)
    signer = Signer(strict.wallet.hotkey.ss58_address)
    assert (await strict.pipeline.handle(signer.grpc(Dummy(input=1)))).ok
    refused = await strict.pipeline.handle(signer.grpc(Dummy(input=7)))
    assert refused.status == 401 and refused.message.startswith("Not Verified #")
    forged = await strict.pipeline.handle(signer.grpc(Dummy(input=2), bt_header_dendrite_signature="0x" + "ab" * 64))
    assert forged.status == 401 and "Signature mismatch" in forged.message
    assert checked == [1, 7]  # never reached by the forged call


def conflicting(synapse: Dummy) -> Dummy:
    """A forward that answers with a status of its own, as SDK miners do."""
    synapse.axon.status_code = 409
    synapse.axon.status_message = "already answered this round"
    return synapse


def conflicting_by_exception(synapse: Dummy) -> Dummy:
    from axon_grpc import SynapseException

    synapse.axon.status_code = 429
    synapse.axon.status_message = "slow down"
    raise SynapseException("refused", synapse)


@pytest.mark.parametrize("transport", [GRPC, HTTP])
async def test_a_forwards_own_status_survives(transport: str) -> None:
    for forward, status, message in (
        (conflicting, 409, "already answered this round"),
        (conflicting_by_exception, 429, "slow down"),
    ):
        axon, signer = axon_with(forward)
        build = signer.grpc if transport == GRPC else signer.http
        outcome = await axon.pipeline.handle(build(Dummy(input=1)))
        assert (outcome.status, outcome.message) == (status, message)
        info = outcome.synapse.axon
        assert (info.status_code, info.status_message) == (status, message)
        assert info.signature and info.hotkey == axon.wallet.hotkey.ss58_address


async def test_a_forwards_own_status_reaches_both_kinds_of_client() -> None:
    from axon_grpc.testing import serve_axon

    from .test_bridge_client import serve_bridge

    async with serve_axon(conflicting) as h:
        result = await h.call(Dummy(input=1))
        assert (result.dendrite.status_code, result.dendrite.status_message) == (409, "already answered this round")
    async with serve_bridge(conflicting) as b:
        response = await b.client.call(Dummy(input=1))
        assert response.status == 409 and response.message == "already answered this round"
        assert response.headers["bt_header_axon_status_code"] == "409"


async def test_an_outcome_never_changes_once_handle_returned_it() -> None:
    """A stream that fails midway: the returned outcome stays what it was; ``final`` is the failure."""
    outcome = await counting_outcome(13)
    assert outcome.final is outcome
    assert [chunk async for chunk in outcome.stream] == list(range(13))
    assert (outcome.status, outcome.message, outcome.reason) == (200, "Success", None)
    final = outcome.final
    assert (final.status, final.message, final.reason) == (500, "no more after thirteen", "error")
    assert final.synapse.axon.status_code == 500
