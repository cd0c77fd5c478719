#!/usr/bin/env python3
"""Write ``proto/axon/v1/test_vectors.json``: the axon.v1 client test vectors (docs/SPEC.md).

Every value is computed with the axon's own Python implementation (``axon_grpc.auth.legacy``,
``axon_grpc.auth.keys``, ``axon_grpc.auth.btauth``) from fixed keys, nonces and bodies. ed25519
signatures are deterministic; an sr25519 signature is randomised, so one already in the
file is kept while it still verifies over the same message (the file changes only when
the contract does). ``tests/test_vectors.py`` checks the file against the implementation
and against a running axon.

    python scripts/gen_test_vectors.py            # rewrite the file
    python scripts/gen_test_vectors.py --check    # exit 1 if the file is not what it would write
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import base58

from axon_grpc.auth import btauth, session_wire
from axon_grpc.auth.keys import Keypair, ss58_encode, verify_signature
from axon_grpc.auth.legacy import (
    PROTOCOL_VERSION,
    answer_message,
    grpc_body_hash,
    reply_hash,
    response_message,
    signed_message,
)
from axon_grpc.schema.contract import CONTRACT_ANNOUNCEMENT, CONTRACT_NAME, CONTRACT_TRAILER, RULES

PATH = Path(__file__).resolve().parent.parent / "proto" / "axon" / "v1" / "test_vectors.json"

#: The format of the file: fields may be added within a format, never renamed or removed.
FORMAT = "axon-test-vectors/1"

#: Fixed 32-byte seeds: test keys only, never to hold value.
SEEDS = {
    "caller-sr25519": ("sr25519", "0x" + hashlib.sha256(b"axon.v1 test vectors: caller sr25519").hexdigest()),
    "caller-ed25519": ("ed25519", "0x" + hashlib.sha256(b"axon.v1 test vectors: caller ed25519").hexdigest()),
    "axon-sr25519": ("sr25519", "0x" + hashlib.sha256(b"axon.v1 test vectors: axon sr25519").hexdigest()),
    "axon-ed25519": ("ed25519", "0x" + hashlib.sha256(b"axon.v1 test vectors: axon ed25519").hexdigest()),
}

NONCE = 1_764_547_200_000_000_000  #: 2025-12-01T00:00:00Z in nanoseconds
UUID = "1c9d4e7a-cf2b-11f0-8de9-0242ac120002"
AXON_NONCE = 1_764_547_200_123_456_789
AXON_UUID = "7e57a7e5-cf2b-11f0-8de9-0242ac120003"

DUMMY = "/axon.v1.Axon/Dummy"
PING = "/axon.v1.Axon/Synapse"

#: Request bodies: protobuf bytes as sent. ``Dummy`` is ``message Dummy { int64 input = 1;
#: optional int64 output = 2; }``: the axon the tests run answers ``output = 2 * input``.
BODIES = {
    "ping": (PING, b"", "message Synapse {} (no fields): the empty body"),
    "dummy-7": (DUMMY, bytes.fromhex("0807"), "Dummy{input: 7}"),
    "dummy-300": (DUMMY, bytes.fromhex("08ac02"), "Dummy{input: 300}"),
}
#: What the test axon answers to each body (its ``forward`` sets ``output = 2 * input``).
RESPONSES = {"ping": b"", "dummy-7": bytes.fromhex("0807100e"), "dummy-300": bytes.fromhex("08ac0210d804")}
#: Dummy{input: 7, output: 14}: the answer to dummy-7.
DUMMY_7_ANSWER = RESPONSES["dummy-7"]


def _keys() -> dict[str, Keypair]:
    return {name: Keypair.create_from_seed(seed, crypto) for name, (crypto, seed) in SEEDS.items()}


class Signer:
    """Signs with the fixed keys; keeps an sr25519 signature of the previous file that still verifies."""

    def __init__(self, keys: dict[str, Keypair], previous: dict[str, str]) -> None:
        self.keys = keys
        self.previous = previous

    def sign(self, key: str, message: str | bytes) -> str:
        keypair = self.keys[key]
        data = message.encode() if isinstance(message, str) else message
        if keypair.crypto_type == "sr25519":
            kept = self.previous.get(hashlib.sha256(key.encode() + b"\0" + data).hexdigest())
            if kept is not None and verify_signature(keypair.ss58_address, data, bytes.fromhex(kept[2:]), "sr25519"):
                return kept
        return keypair.sign_hex(data)


def _previous_signatures(path: Path) -> dict[str, str]:
    """sr25519 signatures of the current file, by (key, signed bytes)."""
    if not path.exists():
        return {}
    found: dict[str, str] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            key, signature = node.get("signer"), node.get("signature")
            signed = node.get("signed_message", node.get("payload"))
            if isinstance(key, str) and isinstance(signature, str) and isinstance(signed, str):
                data = signed.encode()
                found[hashlib.sha256(key.encode() + b"\0" + data).hexdigest()] = signature
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(json.loads(path.read_text()))
    return found


def _ss58_two_byte(public_key: bytes, ss58_format: int = 42) -> str:
    """The non-canonical two-byte-prefix SS58 form of a format below 64 (refused, rule R12)."""
    first = ((ss58_format & 0b1111_1100) >> 2) | 0b0100_0000
    second = (ss58_format >> 8) | ((ss58_format & 0b11) << 6)
    body = bytes([first, second]) + public_key
    checksum = hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2]
    return base58.b58encode(body + checksum).decode()


def _bad_checksum(address: str) -> str:
    raw = bytearray(base58.b58decode(address))
    raw[-1] ^= 0x01
    return base58.b58encode(bytes(raw)).decode()


def _metadata(
    caller: Keypair, body_hash: str, signature: str, nonce: int, uuid: str, **extra: str | None
) -> list[list[str]]:
    values: dict[str, str | None] = {
        "bt_header_dendrite_hotkey": caller.ss58_address,
        "bt_header_dendrite_nonce": str(nonce),
        "bt_header_dendrite_uuid": uuid,
        "bt_header_dendrite_signature": signature,
        "bt_header_dendrite_version": str(PROTOCOL_VERSION),
        "bt_header_dendrite_crypto": caller.crypto_type,
        "computed_body_hash": body_hash,
        "timeout": "12",
    }
    values.update(extra)
    return [[k, v] for k, v in values.items() if v is not None]


def _request(
    signer: Signer,
    name: str,
    body_name: str,
    caller: str,
    axon: str,
    *,
    rules: list[str],
    nonce: int = NONCE,
    uuid: str = UUID,
    body_hash: str | None = None,
    hotkey: str | None = None,
    receiver: str | None = None,
    sign_with: str | None = None,
    overrides: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """One signed request; the keyword arguments break it on purpose (negative vectors)."""
    keys = signer.keys
    method, body, body_text = BODIES[body_name]
    caller_key, axon_key = keys[caller], keys[axon]
    right_hash = grpc_body_hash(method, body)
    body_hash = right_hash if body_hash is None else body_hash
    hotkey = caller_key.ss58_address if hotkey is None else hotkey
    receiver = axon_key.ss58_address if receiver is None else receiver
    message = signed_message(nonce, hotkey, receiver, uuid, body_hash)
    signing_key = sign_with or caller
    signature = signer.sign(signing_key, message)
    metadata = _metadata(caller_key, body_hash, signature, nonce, uuid, **(overrides or {}))
    if hotkey != caller_key.ss58_address:
        metadata = [[k, hotkey if k == "bt_header_dendrite_hotkey" else v] for k, v in metadata]
    return {
        "name": name,
        "rules": rules,
        "caller": caller,
        "axon": axon,
        "axon_hotkey": receiver,
        "method": method,
        "body": body.hex(),
        "body_text": body_text,
        "response_body": RESPONSES[body_name].hex(),
        "body_hash": body_hash,
        "hash_input": (method.encode() + b"\n" + body).hex(),
        "nonce": nonce,
        "uuid": uuid,
        "signed_message": message,
        "signer": signing_key,
        "signature": signature,
        "deterministic": keys[signing_key].crypto_type == "ed25519",
        "metadata": metadata,
    }


def _expect(grpc_status: str, http_status: int, details: str) -> dict[str, Any]:
    return {"grpc_status": grpc_status, "http_status": http_status, "details": details}


def _answer(signer: Signer, name: str, rules: list[str], caller: str, axon: str, uuid: str) -> dict[str, Any]:
    """A signed answer (``answer/1``) by ``axon`` to caller's Dummy{input: 7} request."""
    keys = signer.keys
    dendrite, axon_hotkey = keys[caller].ss58_address, keys[axon].ss58_address
    answer_hash = reply_hash(DUMMY_7_ANSWER)
    message = answer_message(NONCE, dendrite, axon_hotkey, uuid or None, answer_hash)
    return {
        "name": name,
        "rules": rules,
        "request": {"nonce": NONCE, "dendrite_hotkey": dendrite, "uuid": uuid},
        "axon": axon,
        "axon_hotkey": axon_hotkey,
        "response_body": DUMMY_7_ANSWER.hex(),
        "response_text": "Dummy{input: 7, output: 14}",
        "answer_hash": answer_hash,
        "signed_message": message,
        "signer": axon,
        "signature": signer.sign(axon, message),
        "deterministic": keys[axon].crypto_type == "ed25519",
    }


def _error_answer(signer: Signer, name: str, rules: list[str], axon: str, dendrite: str | None) -> dict[str, Any]:
    """The signature of an error answer by ``axon`` to a request of ``dendrite``."""
    axon_hotkey = signer.keys[axon].ss58_address
    message = response_message(AXON_NONCE, dendrite, axon_hotkey, AXON_UUID)
    return {
        "name": name,
        "rules": rules,
        "trailers": {
            "bt_header_axon_nonce": str(AXON_NONCE),
            "bt_header_axon_uuid": AXON_UUID,
            "bt_header_axon_hotkey": axon_hotkey,
        },
        "dendrite_hotkey": dendrite,
        "signed_message": message,
        "signer": axon,
        "signature": signer.sign(axon, message),
        "deterministic": signer.keys[axon].crypto_type == "ed25519",
    }


def build(previous: dict[str, str] | None = None) -> dict[str, Any]:
    keys = _keys()
    signer = Signer(keys, previous or {})
    out: dict[str, Any] = {
        "format": FORMAT,
        "contract": CONTRACT_NAME,
        "rules": RULES,
        "announcement": {"trailer": CONTRACT_TRAILER, "value": CONTRACT_ANNOUNCEMENT},
        "spec": "docs/SPEC.md",
        "about": (
            "Test vectors of the axon.v1 client contract. Each value is derived from the fixed "
            "keys below by the rule(s) its entry names; negative vectors break one rule each and "
            "give the answer an axon sends. Hex is lowercase without 0x unless a field says otherwise. "
            "Regenerate with scripts/gen_test_vectors.py."
        ),
    }
    out["keys"] = [
        {
            "name": name,
            "crypto": keypair.crypto_type,
            "seed": SEEDS[name][1],
            "public_key": keypair.public_key.hex(),
            "ss58": keypair.ss58_address,
        }
        for name, keypair in keys.items()
    ]

    ss58: list[dict[str, Any]] = [
        {
            "name": f"{name}-canonical",
            "rules": ["R12"],
            "public_key": k.public_key.hex(),
            "format": 42,
            "address": k.ss58_address,
            "valid": True,
        }
        for name, k in keys.items()
    ]
    sample = keys["caller-sr25519"]
    ss58 += [
        {
            "name": "two-byte-prefix",
            "rules": ["R12"],
            "public_key": sample.public_key.hex(),
            "format": 42,
            "address": _ss58_two_byte(sample.public_key),
            "valid": False,
            "why": "format 42 written with the two-byte prefix: the same key under another string",
        },
        {
            "name": "other-network-format",
            "rules": ["R12"],
            "public_key": sample.public_key.hex(),
            "format": 0,
            "address": ss58_encode(sample.public_key, 0),
            "valid": False,
            "why": "format 0 (Polkadot): Bittensor addresses are format 42",
        },
        {
            "name": "bad-checksum",
            "rules": ["R12"],
            "public_key": sample.public_key.hex(),
            "format": 42,
            "address": _bad_checksum(sample.ss58_address),
            "valid": False,
            "why": "last checksum byte flipped",
        },
    ]
    out["ss58"] = ss58

    requests = [
        _request(signer, "ping-sr25519", "ping", "caller-sr25519", "axon-sr25519", rules=["R2", "R7", "R9", "R11"]),
        _request(signer, "dummy-ed25519", "dummy-7", "caller-ed25519", "axon-sr25519", rules=["R7", "R9", "R11"]),
        _request(signer, "dummy-sr25519", "dummy-7", "caller-sr25519", "axon-sr25519", rules=["R7", "R9", "R11"]),
        _request(
            signer, "dummy-ed25519-to-ed25519-axon", "dummy-300", "caller-ed25519", "axon-ed25519", rules=["R7", "R9"]
        ),
    ]
    out["requests"] = requests

    out["answers"] = [
        _answer(signer, "answer-caller-ed25519-axon-ed25519", ["R18"], "caller-ed25519", "axon-ed25519", UUID),
        _answer(signer, "answer-caller-sr25519-axon-sr25519", ["R18"], "caller-sr25519", "axon-sr25519", UUID),
        # answer/1 to a btauth/1 request: its uuid part is empty
        _answer(signer, "answer-to-btauth-request", ["R18", "R21"], "caller-ed25519", "axon-ed25519", ""),
    ]
    dendrite = keys["caller-sr25519"].ss58_address
    out["error_answers"] = [
        _error_answer(signer, "error-answer-axon-ed25519", ["R17"], "axon-ed25519", dendrite),
        _error_answer(signer, "error-answer-axon-sr25519", ["R17"], "axon-sr25519", dendrite),
        # an unsigned ping's refusal: no dendrite hotkey, the message says "None"
        _error_answer(signer, "error-answer-to-unsigned-ping", ["R2", "R17"], "axon-sr25519", None),
    ]

    btauth_vectors = []
    for caller_name, axon in (("caller-ed25519", "axon-sr25519"), ("caller-sr25519", "axon-sr25519")):
        caller = keys[caller_name]
        method, body, body_text = BODIES["dummy-7"]
        payload = btauth.build_payload(
            scheme=caller.crypto_type,
            method="POST",
            path=method,
            body=body,
            nonce=NONCE,
            sender=caller.ss58_address,
            receiver=keys[axon].ss58_address,
        )
        signature = signer.sign(caller_name, payload)
        headers = {
            btauth.HEADER_VERSION: btauth.VERSION,
            btauth.HEADER_HOTKEY: caller.ss58_address,
            btauth.HEADER_NONCE: str(NONCE),
            btauth.HEADER_SIGNATURE: signature,
            btauth.HEADER_RECEIVER: keys[axon].ss58_address,
        }
        if caller.crypto_type != btauth.DEFAULT_SCHEME:
            headers[btauth.HEADER_CRYPTO] = caller.crypto_type
        btauth_vectors.append(
            {
                "name": f"btauth-{caller_name}",
                "rules": ["R21"],
                "caller": caller_name,
                "axon": axon,
                "method": method,
                "body": body.hex(),
                "body_text": body_text,
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "nonce": NONCE,
                "payload": payload.decode(),
                "signer": caller_name,
                "signature": signature,
                "deterministic": caller.crypto_type == "ed25519",
                "metadata": [[k, v] for k, v in headers.items()],
            }
        )
    out["btauth"] = btauth_vectors

    out["negative"] = _negatives(signer)
    out["sessions"] = _sessions(keys)
    return out


#: Fixed X25519 private keys of the session vectors (test keys only).
SESSION_PRIVATE = {
    "caller": hashlib.sha256(b"axon.v1 test vectors: caller X25519").digest(),
    "axon": hashlib.sha256(b"axon.v1 test vectors: axon X25519").digest(),
}
SESSION_ID = "0a1b2c3d-00112233445566778899aabbccddeeff"


def _sessions(keys: dict[str, Keypair]) -> list[dict[str, Any]]:
    """``axon-session/1`` (rules R25-R27): an open by caller-ed25519 to axon-ed25519 (both
    signatures deterministic), the accept, the derived key and the MACs of two calls."""
    caller, axon = keys["caller-ed25519"], keys["axon-ed25519"]
    caller_x, axon_x = SESSION_PRIVATE["caller"], SESSION_PRIVATE["axon"]
    open_ = session_wire.SessionOpen(
        version=session_wire.VERSION,
        crypto=caller.crypto_type,
        dendrite_hotkey=caller.ss58_address,
        axon_hotkey=axon.ss58_address,
        ephemeral_key=session_wire.public_key_of(caller_x),
        nonce=NONCE,
    )
    open_.signature = caller.sign_hex(open_.transcript())
    accept = session_wire.SessionAccept(
        version=session_wire.VERSION,
        dendrite_hotkey=caller.ss58_address,
        axon_hotkey=axon.ss58_address,
        dendrite_ephemeral_key=open_.ephemeral_key,
        axon_ephemeral_key=session_wire.public_key_of(axon_x),
        nonce=NONCE,
        session_id=SESSION_ID,
        lifetime_s=600,
        max_calls=1_000_000,
        window=1024,
    )
    accept.signature = axon.sign_hex(accept.transcript())
    key = session_wire.session_key(caller_x, accept.axon_ephemeral_key, open_, accept)
    assert key == session_wire.session_key(axon_x, open_.ephemeral_key, open_, accept)
    calls = []
    for counter, (body_name, timeout) in enumerate((("dummy-7", "12.0"), ("dummy-300", None)), start=1):
        method, body, body_text = BODIES[body_name]
        body_hash = grpc_body_hash(method, body)
        metadata = [[session_wire.SESSION_KEY, SESSION_ID], [session_wire.COUNTER_KEY, str(counter)]]
        mac = session_wire.call_mac(key, SESSION_ID, counter, method, body_hash, timeout)
        metadata.append([session_wire.MAC_KEY, mac])
        if timeout is not None:
            metadata.append(["timeout", timeout])
        calls.append(
            {
                "method": method,
                "body": body.hex(),
                "body_text": body_text,
                "counter": counter,
                "timeout": timeout,
                "body_hash": body_hash,
                "mac_message": session_wire.mac_message(SESSION_ID, counter, method, body_hash, timeout).decode(),
                "mac": mac,
                "metadata": metadata,
            }
        )
    return [
        {
            "name": "session-open",
            "rules": ["R25"],
            "signer": "caller-ed25519",
            "method": session_wire.OPEN_METHOD,
            "ephemeral_private": caller_x.hex(),
            "message": session_wire.message_fields(open_),
            "encoded": open_.encode().hex(),
            "transcript": open_.transcript(),
            "signature": open_.signature,
            "deterministic": True,
        },
        {
            "name": "session-accept",
            "rules": ["R26"],
            "signer": "axon-ed25519",
            "ephemeral_private": axon_x.hex(),
            "message": session_wire.message_fields(accept),
            "encoded": accept.encode().hex(),
            "transcript": accept.transcript(),
            "signature": accept.signature,
            "deterministic": True,
            "shared_secret": session_wire.shared_secret(caller_x, accept.axon_ephemeral_key).hex(),
            "salt": session_wire.transcript_hash(open_, accept).hex(),
            "hkdf_info": session_wire.KEY_INFO.decode(),
            "key": key.hex(),
        },
        {
            "name": "session-calls",
            "rules": ["R27"],
            "key": key.hex(),
            "session_id": SESSION_ID,
            "calls": calls,
        },
    ]


def _negative(
    signer: Signer,
    name: str,
    rule: str,
    breaks: str,
    expect: dict[str, Any],
    *,
    live_nonce: str = "now",
    live_nonce_offset_s: int = 0,
    send_times: int = 1,
    **broken: Any,
) -> dict[str, Any]:
    """A Dummy{input: 7} call by caller-ed25519 to axon-sr25519, broken by ``broken``
    (:func:`_request`'s keyword arguments) to break ``rule``."""
    entry = _request(signer, name, "dummy-7", "caller-ed25519", "axon-sr25519", rules=[rule], **broken)
    entry.update(
        rule=rule,
        breaks=breaks,
        expect=expect,
        live_nonce=live_nonce,
        live_nonce_offset_s=live_nonce_offset_s,
        send_times=send_times,
    )
    return entry


def _negatives(signer: Signer) -> list[dict[str, Any]]:
    """Requests that break one rule each, with the answer (status, details) an axon gives.

    ``live_nonce``: how to send the vector to a running axon. ``"now"``: replace the nonce
    (in the metadata and at the head of ``signed_message``) with the current time in
    nanoseconds plus ``live_nonce_offset_s`` and re-sign ``signed_message`` with ``signer``;
    ``"as-is"``: send the metadata unchanged. ``send_times``: how many times to send it;
    ``expect`` is the answer to the last.
    """
    keys = signer.keys
    method, body, _ = BODIES["dummy-7"]
    caller = keys["caller-ed25519"]
    mismatch = _expect("UNAUTHENTICATED", 401, "Not Verified with error: Signature mismatch (rule R9)")
    negatives = [
        _negative(
            signer,
            "hash-without-method-path",
            "R7",
            "computed_body_hash is SHA3-256 of the message bytes alone (the rule before the method path was covered)",
            _expect("INVALID_ARGUMENT", 400, "body hash must cover the method path (rule R7)"),
            body_hash=hashlib.sha3_256(body).hexdigest(),
        ),
        _negative(
            signer,
            "hash-upper-case",
            "R7",
            "computed_body_hash in upper-case hex",
            _expect("INVALID_ARGUMENT", 400, "computed_body_hash must be 64 lowercase hex digits (rule R7)"),
            body_hash=grpc_body_hash(method, body).upper(),
        ),
        _negative(
            signer,
            "hash-of-other-method",
            "R7",
            "computed_body_hash covers another method path than the one called",
            _expect(
                "INVALID_ARGUMENT",
                400,
                "body hash does not match: computed_body_hash is the SHA3-256 of the method path, "
                "a newline and the message bytes as sent (rule R7)",
            ),
            body_hash=grpc_body_hash("/axon.v1.Axon/Other", body),
        ),
        _negative(
            signer,
            "wrong-receiver",
            "R9",
            "signed for another axon's hotkey (axon-ed25519) and sent to axon-sr25519",
            mismatch,
            receiver=keys["axon-ed25519"].ss58_address,
        ),
        _negative(
            signer,
            "signed-by-other-key",
            "R9",
            "the hotkey is caller-ed25519's but the signature is caller-sr25519's",
            mismatch,
            sign_with="caller-sr25519",
        ),
        _negative(
            signer,
            "key-type-not-declared",
            "R11",
            "an ed25519 hotkey's signature without bt_header_dendrite_crypto: checked as sr25519",
            mismatch,
            overrides={"bt_header_dendrite_crypto": None},
        ),
        _negative(
            signer,
            "unsupported-key-type",
            "R11",
            "bt_header_dendrite_crypto names a key type the contract does not know",
            _expect(
                "UNAUTHENTICATED",
                401,
                "Not Verified with error: Unsupported crypto; use one of sr25519, ed25519 (rule R11)",
            ),
            overrides={"bt_header_dendrite_crypto": "ecdsa"},
        ),
        _negative(
            signer,
            "non-canonical-ss58",
            "R12",
            "the caller's hotkey written with the two-byte SS58 prefix",
            _expect(
                "UNAUTHENTICATED",
                401,
                "Not Verified with error: Invalid hotkey: invalid SS58 address: not canonical (format 42 takes "
                "the one-byte prefix; re-encode the public key) (rule R12)",
            ),
            hotkey=_ss58_two_byte(caller.public_key),
        ),
        _negative(
            signer,
            "ss58-other-format",
            "R12",
            "the caller's hotkey in SS58 format 0 instead of 42",
            _expect(
                "UNAUTHENTICATED",
                401,
                "Not Verified with error: Invalid hotkey: invalid SS58 address: wrong format (rule R12)",
            ),
            hotkey=ss58_encode(caller.public_key, 0),
        ),
    ]
    for unit, nonce in (
        ("seconds", NONCE // 10**9),
        ("milliseconds", NONCE // 10**6),
        ("microseconds", NONCE // 10**3),
    ):
        negatives.append(
            _negative(
                signer,
                f"nonce-in-{unit}",
                "R13",
                f"the nonce is the time in {unit}, not nanoseconds",
                _expect(
                    "UNAUTHENTICATED",
                    401,
                    "Not Verified with error: Nonce must be nanoseconds since the Unix epoch; "
                    f"this one is in {unit} (rule R13)",
                ),
                live_nonce="as-is",
                nonce=nonce,
            )
        )
    negatives += [
        _negative(
            signer,
            "nonce-in-the-future",
            "R13",
            "the nonce is 60 s ahead of the axon's clock (at most 30 s is allowed)",
            _expect("UNAUTHENTICATED", 401, "Not Verified with error: Nonce is too far in the future (rule R13)"),
            live_nonce_offset_s=60,
        ),
        _negative(
            signer,
            "replay",
            "R14",
            "the same signed request sent twice",
            _expect(
                "UNAUTHENTICATED",
                401,
                "Not Verified with error: Nonce is too old, a newer one was last processed (rule R14)",
            ),
            send_times=2,
        ),
        _negative(
            signer,
            "missing-signature",
            "R3",
            "bt_header_dendrite_signature absent",
            _expect("UNAUTHENTICATED", 401, "Not Verified with error: Missing Signature (rule R3)"),
            overrides={"bt_header_dendrite_signature": None},
        ),
        _negative(
            signer,
            "uuid-too-long",
            "R4",
            "a uuid of 65 characters (at most 64)",
            _expect(
                "INVALID_ARGUMENT",
                400,
                "Improperly formatted request. bt_header_dendrite_uuid is longer than 64 characters (rule R4)",
            ),
            uuid="u" * 65,
        ),
        _negative(
            signer,
            "version-before-7.2.0",
            "R6",
            "bt_header_dendrite_version below 7002000",
            _expect(
                "UNAUTHENTICATED",
                401,
                "Not Verified with error: Dendrite version predates 7.2.0 and is refused by this axon (rule R6)",
            ),
            overrides={"bt_header_dendrite_version": "7001000"},
        ),
        _negative(
            signer,
            "name-of-other-synapse",
            "R6",
            "the name key names another synapse than the method called",
            _expect(
                "INVALID_ARGUMENT",
                400,
                "Improperly formatted request. The name header does not match the synapse called (rule R6)",
            ),
            overrides={"name": "Other"},
        ),
    ]
    return negatives


def _render(node: Any, indent: str) -> str:
    """JSON, two-space indented, with lists of scalars (and of pairs) on one line."""
    inner = indent + "  "
    if isinstance(node, dict):
        if not node:
            return "{}"
        items = ",\n".join(f"{inner}{json.dumps(k)}: {_render(v, inner)}" for k, v in node.items())
        return "{\n" + items + "\n" + indent + "}"
    if isinstance(node, list):
        if all(not isinstance(v, (dict, list)) for v in node):
            return json.dumps(node, ensure_ascii=False)
        items = ",\n".join(inner + _render(v, inner) for v in node)
        return "[\n" + items + "\n" + indent + "]"
    return json.dumps(node, ensure_ascii=False)


def render(vectors: dict[str, Any]) -> str:
    return _render(vectors, "") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from what would be written")
    parser.add_argument("--output", type=Path, default=PATH)
    args = parser.parse_args(argv)
    text = render(build(_previous_signatures(args.output)))
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run scripts/gen_test_vectors.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
