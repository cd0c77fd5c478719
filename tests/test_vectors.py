"""The axon.v1 test vectors (``proto/axon/v1/test_vectors.json``) against the Python
implementation: every value recomputed from the fixed keys, every signature verified, and
the file equal to what ``scripts/gen_test_vectors.py`` writes."""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import re
import time
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import pytest

from axon_grpc import Synapse
from axon_grpc.auth import btauth
from axon_grpc.auth.keys import Keypair, ss58_decode, ss58_encode, verify_signature
from axon_grpc.auth.legacy import (
    HASH_MISMATCH,
    answer_message,
    grpc_body_hash,
    reply_hash,
    response_message,
    signed_message,
)
from axon_grpc.auth.wallet import KeypairWallet
from axon_grpc.errors import InvalidAddress
from axon_grpc.schema.contract import CONTRACT, CONTRACT_ANNOUNCEMENT, CONTRACT_NAME, CONTRACT_TRAILER, RULES
from axon_grpc.testing import serve_axon

from .support import RawCaller, dummy_forward

ROOT = Path(__file__).resolve().parent.parent
VECTORS_PATH = ROOT / "proto" / "axon" / "v1" / "test_vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
KEYS = {k["name"]: Keypair.create_from_seed(k["seed"], k["crypto"]) for k in VECTORS["keys"]}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_test_vectors", ROOT / "scripts" / "gen_test_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in entries]


def _check_signature(entry: dict[str, Any], signed: bytes) -> None:
    """The entry's signature verifies under its signer; an ed25519 one is the deterministic one."""
    key = KEYS[entry["signer"]]
    raw = bytes.fromhex(entry["signature"].removeprefix("0x"))
    assert verify_signature(key.ss58_address, signed, raw, key.crypto_type)
    assert entry["deterministic"] is (key.crypto_type == "ed25519")
    if entry["deterministic"]:
        assert key.sign_hex(signed) == entry["signature"]


def test_the_file_is_what_the_generator_writes() -> None:
    generator = _generator()
    assert generator.render(generator.build(generator._previous_signatures(VECTORS_PATH))) == VECTORS_PATH.read_text()


def test_the_file_names_the_contract_it_tests() -> None:
    assert VECTORS["format"] == "axon-test-vectors/1"
    assert (VECTORS["contract"], VECTORS["rules"]) == (CONTRACT_NAME, RULES)
    assert VECTORS["announcement"] == {"trailer": CONTRACT_TRAILER, "value": CONTRACT_ANNOUNCEMENT}
    assert f"CONTRACT {CONTRACT_ANNOUNCEMENT}\n" in CONTRACT  # the .proto header says it too
    assert f"`{CONTRACT_ANNOUNCEMENT}`" in (ROOT / "docs" / "SPEC.md").read_text()
    named = {
        rule
        for section in VECTORS.values()
        if isinstance(section, list)
        for e in section
        for rule in e.get("rules", ())
    }
    assert named <= {f"R{n}" for n in range(1, RULES + 1)}


@pytest.mark.parametrize("key", VECTORS["keys"], ids=_ids(VECTORS["keys"]))
def test_keys_derive_from_their_seeds(key: dict[str, Any]) -> None:
    pair = KEYS[key["name"]]
    assert (pair.crypto_type, pair.public_key.hex(), pair.ss58_address) == (
        key["crypto"],
        key["public_key"],
        key["ss58"],
    )


@pytest.mark.parametrize("entry", VECTORS["ss58"], ids=_ids(VECTORS["ss58"]))
def test_ss58(entry: dict[str, Any]) -> None:
    public_key = bytes.fromhex(entry["public_key"])
    if entry["valid"]:
        assert ss58_encode(public_key, entry["format"]) == entry["address"]
        assert ss58_decode(entry["address"], 42) == public_key
    else:
        with pytest.raises(InvalidAddress):
            ss58_decode(entry["address"], 42)


@pytest.mark.parametrize("entry", VECTORS["requests"], ids=_ids(VECTORS["requests"]))
def test_signed_requests(entry: dict[str, Any]) -> None:
    body = bytes.fromhex(entry["body"])
    assert entry["hash_input"] == (entry["method"].encode() + b"\n" + body).hex()
    assert entry["body_hash"] == grpc_body_hash(entry["method"], body)
    assert entry["body_hash"] == hashlib.sha3_256(bytes.fromhex(entry["hash_input"])).hexdigest()
    caller = KEYS[entry["caller"]]
    assert entry["axon_hotkey"] == KEYS[entry["axon"]].ss58_address
    message = signed_message(
        entry["nonce"], caller.ss58_address, entry["axon_hotkey"], entry["uuid"], entry["body_hash"]
    )
    assert entry["signed_message"] == message
    assert entry["signer"] == entry["caller"]
    _check_signature(entry, message.encode())
    metadata = dict(entry["metadata"])
    assert metadata["bt_header_dendrite_hotkey"] == caller.ss58_address
    assert metadata["bt_header_dendrite_nonce"] == str(entry["nonce"])
    assert metadata["bt_header_dendrite_uuid"] == entry["uuid"]
    assert metadata["bt_header_dendrite_signature"] == entry["signature"]
    assert metadata["bt_header_dendrite_crypto"] == caller.crypto_type
    assert metadata["computed_body_hash"] == entry["body_hash"]


@pytest.mark.parametrize("entry", VECTORS["answers"], ids=_ids(VECTORS["answers"]))
def test_signed_answers(entry: dict[str, Any]) -> None:
    assert entry["answer_hash"] == reply_hash(bytes.fromhex(entry["response_body"]))
    request = entry["request"]
    message = answer_message(
        request["nonce"],
        request["dendrite_hotkey"],
        entry["axon_hotkey"],
        request["uuid"] or None,
        entry["answer_hash"],
    )
    assert message.startswith("answer/1.") and entry["signed_message"] == message
    assert entry["axon_hotkey"] == KEYS[entry["signer"]].ss58_address
    _check_signature(entry, message.encode())


@pytest.mark.parametrize("entry", VECTORS["error_answers"], ids=_ids(VECTORS["error_answers"]))
def test_signed_error_answers(entry: dict[str, Any]) -> None:
    trailers = entry["trailers"]
    message = response_message(
        int(trailers["bt_header_axon_nonce"]),
        entry["dendrite_hotkey"],
        trailers["bt_header_axon_hotkey"],
        trailers["bt_header_axon_uuid"],
    )
    assert entry["signed_message"] == message
    _check_signature(entry, message.encode())


@pytest.mark.parametrize("entry", VECTORS["btauth"], ids=_ids(VECTORS["btauth"]))
def test_btauth(entry: dict[str, Any]) -> None:
    body = bytes.fromhex(entry["body"])
    caller = KEYS[entry["caller"]]
    assert entry["body_sha256"] == hashlib.sha256(body).hexdigest()
    payload = btauth.build_payload(
        scheme=caller.crypto_type,
        method="POST",
        path=entry["method"],
        body=body,
        nonce=entry["nonce"],
        sender=caller.ss58_address,
        receiver=KEYS[entry["axon"]].ss58_address,
    )
    assert entry["payload"].encode() == payload
    _check_signature(entry, payload)
    headers = dict(entry["metadata"])
    assert headers[btauth.HEADER_SIGNATURE] == entry["signature"]
    assert headers.get(btauth.HEADER_CRYPTO, btauth.DEFAULT_SCHEME) == caller.crypto_type


@pytest.mark.parametrize("entry", VECTORS["negative"], ids=_ids(VECTORS["negative"]))
def test_negative_vectors_break_only_their_rule(entry: dict[str, Any]) -> None:
    """What a negative vector signs is signed right (its signer's signature over its
    message verifies), so only the rule it names can refuse it."""
    assert entry["rule"] in entry["rules"] and entry["breaks"]
    assert set(entry["expect"]) == {"grpc_status", "http_status", "details"}
    assert re.search(r"\(rule R\d+\)$", entry["expect"]["details"]), "a refusal names the rule it applies"
    metadata = dict(entry["metadata"])
    assert metadata.get("bt_header_dendrite_nonce") == str(entry["nonce"])
    assert entry["signed_message"] == signed_message(
        entry["nonce"], metadata["bt_header_dendrite_hotkey"], entry["axon_hotkey"], entry["uuid"], entry["body_hash"]
    )
    if "bt_header_dendrite_signature" in metadata:
        _check_signature(entry, entry["signed_message"].encode())
    body = bytes.fromhex(entry["body"])
    right = grpc_body_hash(entry["method"], body)
    if entry["rule"] == "R7":
        assert entry["body_hash"] != right
    else:
        assert entry["body_hash"] == right
    if entry["rule"] == "R9":
        signer = KEYS[entry["signer"]]
        assert (
            entry["axon_hotkey"] != KEYS[entry["axon"]].ss58_address
            or signer.ss58_address != metadata["bt_header_dendrite_hotkey"]
        )
    if entry["rule"] == "R12":
        with pytest.raises(InvalidAddress):
            ss58_decode(metadata["bt_header_dendrite_hotkey"], 42)


# -- the vectors sent to a running axon that holds the key axon-sr25519 ------------------------


def _fresh(entry: dict[str, Any], offset_s: float = 0.0) -> list[tuple[str, str]]:
    """``entry``'s metadata with the current time as nonce, re-signed by its signer (the
    recipe of docs/TEST_VECTORS.md)."""
    nonce = str(time.time_ns() + int(offset_s * 1e9))
    message = nonce + entry["signed_message"][len(str(entry["nonce"])) :]
    signature = KEYS[entry["signer"]].sign_hex(message)
    replaced = {"bt_header_dendrite_nonce": nonce, "bt_header_dendrite_signature": signature}
    return [(k, replaced.get(k, v)) for k, v in entry["metadata"]]


@pytest.fixture
async def vector_axon() -> AsyncIterator[tuple[grpc.aio.Channel, str]]:
    async with serve_axon(dummy_forward, wallet=KeypairWallet(KEYS["axon-sr25519"])) as h:
        channel = grpc.aio.insecure_channel(h.info.ip_str())
        try:
            yield channel, h.info.hotkey
        finally:
            await channel.close()


async def _send(
    channel: grpc.aio.Channel, method: str, body: bytes, metadata: list[tuple[str, str]]
) -> tuple[grpc.StatusCode, bytes | None, str, dict[str, str]]:
    call = channel.unary_unary(method)(body, metadata=metadata, timeout=10)
    try:
        response = await call
    except grpc.aio.AioRpcError as e:
        return e.code(), None, e.details() or "", dict(e.trailing_metadata() or ())
    return grpc.StatusCode.OK, response, "", dict(await call.trailing_metadata() or ())


async def test_requests_are_answered_live(vector_axon: tuple[grpc.aio.Channel, str]) -> None:
    channel, hotkey = vector_axon
    assert hotkey == KEYS["axon-sr25519"].ss58_address
    for entry in VECTORS["requests"]:
        if entry["axon"] != "axon-sr25519":
            continue
        status, response, details, trailers = await _send(
            channel, entry["method"], bytes.fromhex(entry["body"]), _fresh(entry)
        )
        assert (status, details) == (grpc.StatusCode.OK, ""), entry["name"]
        assert response == bytes.fromhex(entry["response_body"])
        assert trailers[VECTORS["announcement"]["trailer"]] == VECTORS["announcement"]["value"]
        assert trailers["bt_header_axon_hotkey"] == hotkey


async def test_answers_are_signed_as_the_vectors_say(vector_axon: tuple[grpc.aio.Channel, str]) -> None:
    """A request asking for a signed answer gets one that verifies by the answers' rule (R18)."""
    channel, hotkey = vector_axon
    entry = next(e for e in VECTORS["requests"] if e["name"] == "dummy-ed25519")
    metadata = [*_fresh(entry), ("bt_header_sign_answer", "1")]
    status, response, _, trailers = await _send(channel, entry["method"], bytes.fromhex(entry["body"]), metadata)
    assert status is grpc.StatusCode.OK and response is not None
    sent = dict(metadata)
    message = answer_message(
        int(sent["bt_header_dendrite_nonce"]),
        sent["bt_header_dendrite_hotkey"],
        hotkey,
        entry["uuid"],
        reply_hash(response),
    )
    assert KEYS["axon-sr25519"].verify(message, trailers["bt_header_axon_signature"])


@pytest.mark.parametrize("entry", VECTORS["negative"], ids=_ids(VECTORS["negative"]))
async def test_negative_vectors_are_refused_live(
    vector_axon: tuple[grpc.aio.Channel, str], entry: dict[str, Any]
) -> None:
    channel, _ = vector_axon
    body = bytes.fromhex(entry["body"])
    if entry["live_nonce"] == "as-is":
        metadata = [(k, v) for k, v in entry["metadata"]]
    else:
        metadata = _fresh(entry, entry["live_nonce_offset_s"])
    for _ in range(entry["send_times"]):
        status, _, details, trailers = await _send(channel, entry["method"], body, metadata)
    expect = entry["expect"]
    assert (status.name, details) == (expect["grpc_status"], expect["details"])
    assert trailers["bt_header_axon_status_code"] == str(expect["http_status"])
    assert trailers[VECTORS["announcement"]["trailer"]] == VECTORS["announcement"]["value"]


class Scores(Synapse):
    """A synapse with a map field: protobuf lets its entries go in any order."""

    scores: dict[str, int] = {}
    total: int = 0


def _sum_scores(synapse: Scores) -> Scores:
    synapse.total = sum(synapse.scores.values())
    return synapse


def _entry(key: str, value: int) -> bytes:
    inner = b"\x0a" + bytes([len(key)]) + key.encode() + b"\x10" + bytes([value])
    return b"\x0a" + bytes([len(inner)]) + inner


async def test_the_hash_is_of_the_bytes_sent_not_of_the_message() -> None:
    """Rule R8: two encodings of one map message are different bytes; a hash of one does
    not pass with the other (rule R7's refusal), each passes as itself."""
    in_order, reversed_order = _entry("a", 1) + _entry("b", 2), _entry("b", 2) + _entry("a", 1)
    async with serve_axon(_sum_scores) as h:
        caller = RawCaller(h.info.ip_str(), h.info.hotkey)
        try:
            signed_other = caller.metadata(in_order, method="Scores")
            status, _, details, _ = await caller.call("Scores", reversed_order, signed_other)
            assert (status, details) == (grpc.StatusCode.INVALID_ARGUMENT, f"{HASH_MISMATCH} (rule R7)")
            for body in (in_order, reversed_order):
                status, reply, details, _ = await caller.call("Scores", body, caller.metadata(body, method="Scores"))
                assert status is grpc.StatusCode.OK and reply is not None and reply.endswith(b"\x10\x03"), details
        finally:
            await caller.close()


def test_the_spec_lists_every_rule_and_a_test_for_it() -> None:
    """docs/SPEC.md: a heading per rule R1..R{RULES}, and a row of its appendix per rule
    whose tests and vectors all exist."""
    spec = (ROOT / "docs" / "SPEC.md").read_text()
    headings = re.findall(r"^\*\*(R\d+)\. ", spec, flags=re.M)
    assert headings == [f"R{n}" for n in range(1, RULES + 1)]
    rows = dict(re.findall(r"^\| (R\d+) \| (.+) \|$", spec, flags=re.M))
    assert list(rows) == headings
    vector_names = {e["name"] for section in VECTORS.values() if isinstance(section, list) for e in section}
    for rule, cell in rows.items():
        named = re.findall(r"`([\w./]+\.py)::(\w+)`", cell)
        assert named, f"{rule} names no test"
        for module, test in named:
            source = (ROOT / "tests" / module).read_text()
            assert re.search(rf"^(async )?def {test}\(", source, flags=re.M), f"{rule}: {module}::{test} is missing"
        for vector in re.findall(r"v:`([\w.-]+)`", cell):
            assert vector in vector_names, f"{rule}: no vector {vector}"


def _session_message(cls: Any, fields: dict[str, Any]) -> Any:
    values = {k: bytes.fromhex(v) if isinstance(getattr(cls(), k), bytes) else v for k, v in fields.items()}
    return cls(**values)


def test_session_vectors() -> None:
    """Rules R25-R27: the open and accept (fields, protobuf bytes, labelled transcripts, both
    signatures), the X25519 secret from either side, the HKDF salt and key, and each call's MAC,
    recomputed from the fixed keys; no transcript of one label passes as another's."""
    from axon_grpc.auth import session_wire as wire

    by_name = {e["name"]: e for e in VECTORS["sessions"]}
    opening, accepting, calls = by_name["session-open"], by_name["session-accept"], by_name["session-calls"]
    open_ = _session_message(wire.SessionOpen, opening["message"])
    accept = _session_message(wire.SessionAccept, accepting["message"])
    for entry, message in ((opening, open_), (accepting, accept)):
        assert message.encode().hex() == entry["encoded"]
        assert type(message).decode(bytes.fromhex(entry["encoded"])) == message
        assert message.transcript() == entry["transcript"]
        assert entry["signature"] == message.signature
        _check_signature(entry, entry["transcript"].encode())
    assert opening["transcript"].startswith("axon-session/1 open\n")
    assert accepting["transcript"].startswith("axon-session/1 accept\n")
    assert wire.echo_problem(open_, accept) is None
    caller_x, axon_x = bytes.fromhex(opening["ephemeral_private"]), bytes.fromhex(accepting["ephemeral_private"])
    assert wire.public_key_of(caller_x) == open_.ephemeral_key
    assert wire.public_key_of(axon_x) == accept.axon_ephemeral_key
    shared = wire.shared_secret(caller_x, accept.axon_ephemeral_key)
    assert shared == wire.shared_secret(axon_x, open_.ephemeral_key)
    assert shared.hex() == accepting["shared_secret"]
    salt = hashlib.sha256(f"{opening['transcript']}\n{accepting['transcript']}".encode()).digest()
    assert salt.hex() == accepting["salt"]
    key = wire.hkdf_sha256(shared, salt, accepting["hkdf_info"].encode())
    assert key.hex() == accepting["key"] == calls["key"]
    for call in calls["calls"]:
        body = bytes.fromhex(call["body"])
        assert grpc_body_hash(call["method"], body) == call["body_hash"]
        sid = calls["session_id"]
        message = wire.mac_message(sid, call["counter"], call["method"], call["body_hash"], call["timeout"])
        assert message.decode() == call["mac_message"] and message.startswith(b"axon-session/1 call\n")
        assert hmac.new(key, message, hashlib.sha256).hexdigest() == call["mac"]
        assert ["axon-session-mac", call["mac"]] in call["metadata"]
    # A label never starts any other signed string of the contract (R9, R17, R18, btauth/1).
    for other in ("answer/1.", "btauth/1\n", str(open_.nonce)):
        assert not opening["transcript"].startswith(other) and not accepting["transcript"].startswith(other)


def test_the_session_primitives_match_their_rfcs() -> None:
    """X25519 (RFC 7748, 6.1) and HKDF-SHA256 (RFC 5869, test case 1), as the session key uses them."""
    from axon_grpc.auth import session_wire as wire

    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    assert wire.public_key_of(alice).hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert (
        wire.shared_secret(alice, bob_public).hex()
        == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )
    with pytest.raises(ValueError, match="low order"):
        wire.shared_secret(alice, bytes(32))  # the all-zero point: no secret
    okm = wire.hkdf_sha256(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
