"""Signed answers: the axon vouches for its answer (opt-in per axon or per request), the
Dendrite checks it with ``verify_response=True`` and never keeps an answer that fails."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, AsyncIterator

import pytest

from axon_grpc import Dendrite, Keypair, KeypairWallet
from axon_grpc.auth.legacy import answer_message
from axon_grpc.schema import schema_for
from axon_grpc.server.call import Outcome
from axon_grpc.synapse import answer_body_hash
from axon_grpc.testing import serve_axon

from .support import Dummy, dummy_forward

TRANSPORTS = ["grpc", "http"]


@pytest.fixture
async def signing_axon() -> AsyncIterator[Any]:
    async with serve_axon(dummy_forward, http_port=0, sign_answers=True) as h:
        yield h


def target(h: Any, transport: str) -> Any:
    return h.info if transport == "grpc" else dataclasses.replace(h.info, port=int(h.axon.http_port))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_signed_answer_is_verified_and_kept(signing_axon: Any, transport: str) -> None:
    dendrite = Dendrite(KeypairWallet.generate(), transport=transport, verify_response=True)
    try:
        result = await dendrite.call(target(signing_axon, transport), Dummy(input=7), timeout=5.0, deserialize=False)
    finally:
        await dendrite.aclose()
    assert (result.dendrite.status_code, result.output) == (200, 14), result.dendrite.status_message
    # The documented message, checked by hand as a client in another language would.
    axon_hotkey = signing_axon.axon.wallet.hotkey.ss58_address
    d = result.dendrite
    if transport == "grpc":
        body_hash = hashlib.sha3_256(schema_for(Dummy).to_bytes(result)).hexdigest()
    else:
        body_hash = answer_body_hash(result)
    message = f"answer/1.{d.nonce}.{d.hotkey}.{axon_hotkey}.{d.uuid}.{body_hash}"
    assert message == answer_message(d.nonce, d.hotkey, axon_hotkey, d.uuid, body_hash)
    assert Keypair.from_ss58(axon_hotkey).verify(message, result.axon.signature)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_request_asks_for_a_signed_answer(transport: str) -> None:
    async with serve_axon(dummy_forward, http_port=0) as h:  # the axon does not sign by default
        plain = Dendrite(KeypairWallet.generate(), transport=transport)
        checking = Dendrite(KeypairWallet.generate(), transport=transport, verify_response=True)
        try:
            unsigned = await plain.call(target(h, transport), Dummy(input=2), timeout=5.0, deserialize=False)
            signed = await checking.call(target(h, transport), Dummy(input=2), timeout=5.0, deserialize=False)
        finally:
            await plain.aclose()
            await checking.aclose()
    assert unsigned.dendrite.status_code == 200 and unsigned.axon.signature is None
    assert (signed.dendrite.status_code, signed.output) == (200, 4), signed.dendrite.status_message
    assert signed.axon.signature is not None


async def test_btauth_request_gets_a_signed_answer(signing_axon: Any) -> None:
    dendrite = Dendrite(KeypairWallet.generate(), auth="btauth", verify_response=True)
    try:
        result = await dendrite.call(signing_axon.info, Dummy(input=1), timeout=5.0, deserialize=False)
    finally:
        await dendrite.aclose()
    assert (result.dendrite.status_code, result.output) == (200, 2), result.dendrite.status_message


def _tamper(h: Any, how: str) -> None:
    """Make the axon's answers fail the check: changed after signing, or not signed."""
    terminal = h.axon.terminal
    sign = terminal.sign_answer

    def changed(outcome: Outcome, transport: str, *request: Any) -> None:
        sign(outcome, transport, *request)
        outcome.synapse.output = 1_000_000
        if outcome.reply is not None:
            outcome.reply = schema_for(Dummy).to_bytes(outcome.synapse)

    terminal.sign_answer = changed if how == "changed" else (lambda *args: None)


@pytest.mark.parametrize(
    "how,reason", [("changed", "answer signature mismatch"), ("unsigned", "the axon did not sign its answer")]
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_answer_failing_the_check_is_refused(signing_axon: Any, transport: str, how: str, reason: str) -> None:
    _tamper(signing_axon, how)
    checking = Dendrite(KeypairWallet.generate(), transport=transport, verify_response=True)
    trusting = Dendrite(KeypairWallet.generate(), transport=transport)
    try:
        refused = await checking.call(target(signing_axon, transport), Dummy(input=7), timeout=5.0, deserialize=False)
        taken = await trusting.call(target(signing_axon, transport), Dummy(input=7), timeout=5.0, deserialize=False)
    finally:
        await checking.aclose()
        await trusting.aclose()
    assert refused.dendrite.status_code == 422
    assert refused.dendrite.status_message == f"Answer not verified: {reason}"
    assert refused.output is None and not refused.is_success  # the answer's fields were not kept
    assert taken.dendrite.status_code == 200  # without verify_response the answer is taken as it came


async def test_answer_for_another_request_does_not_verify(signing_axon: Any) -> None:
    """The signature binds the request's nonce: an answer replayed to another request fails."""
    dendrite = Dendrite(KeypairWallet.generate(), verify_response=True)
    try:
        first = await dendrite.call(signing_axon.info, Dummy(input=7), timeout=5.0, deserialize=False)
        second = Dummy(input=7)
        await dendrite.call(signing_axon.info, second, timeout=5.0, deserialize=False)
    finally:
        await dendrite.aclose()
    body_hash = hashlib.sha3_256(schema_for(Dummy).to_bytes(first)).hexdigest()
    problem = dendrite.signer.answer_problem(second, signing_axon.info.hotkey, body_hash, first.axon.signature)
    assert problem == "answer signature mismatch"
