"""The axon.v1 test vectors (``proto/axon/v1/test_vectors.json``) against the Python
implementation: every value recomputed from the fixed keys, every signature verified, and
the file equal to what ``scripts/gen_test_vectors.py`` writes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from axon_grpc import btauth
from axon_grpc.auth import answer_message, grpc_body_hash, reply_hash, response_message, signed_message
from axon_grpc.contract import CONTRACT_ANNOUNCEMENT, CONTRACT_NAME, CONTRACT_TRAILER, RULES
from axon_grpc.errors import InvalidAddress
from axon_grpc.keys import Keypair, ss58_decode, ss58_encode, verify_signature

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
