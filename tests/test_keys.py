"""Tests for axon_grpc.auth.keys: SS58, keypairs and signatures (real crypto)."""

from __future__ import annotations

import hashlib
import random
from typing import Callable

import base58
import pytest

from axon_grpc.auth.keys import (
    CRYPTO_ED25519,
    CRYPTO_SR25519,
    SUPPORTED_CRYPTO,
    Keypair,
    is_valid_ss58_address,
    parse_signature,
    ss58_decode,
    ss58_encode,
    verify_signature,
)
from axon_grpc.errors import InvalidAddress

# Real Bittensor data (sr25519, ss58 format 42); see tests/data/conformance/keys.json, signing.json.
DENDRITE_SS58 = "5CcfgLpA3ZfFZpHVsMjmhxuake347N5RciPndJ7RW48hQxV1"
DENDRITE_PUB = bytes.fromhex("186085606f29fdcdefe44bee76b5f68c0dac2ff2125ae680e3ec44d376857739")
AXON_SS58 = "5EnhaB9EohCSdXDUSy86cova169sUHCEK2mTNvTHTk7b19xd"
AXON_PUB = bytes.fromhex("787fd10f1d9b098c144c76d8e7cf9ab57722300176f83e9488d304abaefab31f")
REQUEST_MESSAGE = (
    "1795716669893194313.5CcfgLpA3ZfFZpHVsMjmhxuake347N5RciPndJ7RW48hQxV1."
    "5EnhaB9EohCSdXDUSy86cova169sUHCEK2mTNvTHTk7b19xd.c1c45280-e9c4-11f1-b13f-02fc00000001."
    "a17cffcb9dae15bad7684089c1a5e28670408951a2134f0296e8fca3ed4c94a9"
)
REQUEST_SIGNATURE = (
    "0x6c9e2a8a843950c0a3851eb31a57510bb9727bf15feff28c5210896afd53d040"
    "72736c60195cbb428e1a29e6d4b0d57f3e2b121a6f5938042bf1e83d61c3af8a"
)
RESPONSE_MESSAGE = (
    "1795716670055510899.5CcfgLpA3ZfFZpHVsMjmhxuake347N5RciPndJ7RW48hQxV1."
    "5EnhaB9EohCSdXDUSy86cova169sUHCEK2mTNvTHTk7b19xd.c1b8642a-e9c4-11f1-a56b-02fc00000001"
)
RESPONSE_SIGNATURE = (
    "0x1e689f3cd91e3da619705ae3c9c53e44115b5f94b24d97c924dabaa1ca91bb0d"
    "7cf5c167ae048bb6e43804d3500530e23b26bd06891068b09f16fd400286e18e"
)

SEED = bytes(range(32))


def _flip(signature_hex: str, index: int = 10) -> bytes:
    raw = bytearray(bytes.fromhex(signature_hex[2:]))
    raw[index] ^= 0x01
    return bytes(raw)


# ----------------------------------------------------------------------------- SS58


def test_constants() -> None:
    assert CRYPTO_SR25519 == "sr25519"
    assert CRYPTO_ED25519 == "ed25519"
    assert SUPPORTED_CRYPTO == ("sr25519", "ed25519")


def test_real_addresses_decode_to_known_public_keys() -> None:
    assert ss58_decode(DENDRITE_SS58) == DENDRITE_PUB
    assert ss58_decode(AXON_SS58, valid_ss58_format=42) == AXON_PUB


def test_real_public_keys_encode_to_known_addresses() -> None:
    assert ss58_encode(DENDRITE_PUB) == DENDRITE_SS58
    assert ss58_encode(AXON_PUB, 42) == AXON_SS58


@pytest.mark.parametrize("crypto_type", SUPPORTED_CRYPTO)
def test_ss58_round_trip_both_cryptos(crypto_type: str) -> None:
    pair = Keypair.create_from_seed(SEED, crypto_type)
    assert pair.ss58_address.startswith("5")
    assert ss58_decode(pair.ss58_address) == pair.public_key
    assert ss58_encode(pair.public_key) == pair.ss58_address
    assert Keypair.from_ss58(pair.ss58_address, crypto_type).public_key == pair.public_key


@pytest.mark.parametrize("ss58_format", [0, 2, 42, 63, 64, 255, 1000, 16383])
def test_ss58_round_trip_formats(ss58_format: int) -> None:
    address = ss58_encode(DENDRITE_PUB, ss58_format)
    assert ss58_decode(address, valid_ss58_format=ss58_format) == DENDRITE_PUB
    assert Keypair.from_ss58(address).ss58_format == ss58_format


def test_two_byte_prefix_known_vector() -> None:
    # Format 255 encoding of 5GoKvZWG5ZPYL1WUovuHW3zJBWBP5eT8CbqjdRY4Q6iMaQua's key.
    key = ss58_decode("5GoKvZWG5ZPYL1WUovuHW3zJBWBP5eT8CbqjdRY4Q6iMaQua")
    assert ss58_encode(key, 255) == "yGHU8YKprxHbHdEv7oUK4rzMZXtsdhcXVG2CAMyC9WhzhjH2k"
    assert ss58_decode("yGHU8YKprxHbHdEv7oUK4rzMZXtsdhcXVG2CAMyC9WhzhjH2k", 255) == key


def _bad_checksum_address() -> str:
    raw = bytearray(base58.b58decode(DENDRITE_SS58))
    raw[-1] ^= 0xFF
    return base58.b58encode(bytes(raw)).decode()


def _short_address() -> str:
    raw = base58.b58decode(DENDRITE_SS58)
    return base58.b58encode(raw[:-3]).decode()


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        (_bad_checksum_address(), "checksum mismatch"),
        ("5CcfgLpA3ZfFZpHVsMjmhxuake347N5RciPndJ7RW48hQxV0", "invalid base58 character"),
        ("5CcfgLpA3ZfFZpHVsMjmhxuake347N5RciPndJ7RW48hQxVl", "invalid base58 character"),
        (DENDRITE_SS58 + " ", "invalid base58 character"),
        (_short_address(), "wrong length"),
        (DENDRITE_SS58 + "1", "wrong length"),
        ("5" * 500, "wrong length"),
        ("", "empty"),
        (None, "not a string"),
        (DENDRITE_PUB, "not a string"),
        (42, "not a string"),
    ],
)
def test_ss58_decode_failures(address: object, fragment: str) -> None:
    with pytest.raises(InvalidAddress, match=fragment) as info:
        ss58_decode(address)  # type: ignore[arg-type]
    message = str(info.value)
    assert message == f"invalid SS58 address: {fragment}"
    assert DENDRITE_SS58 not in message


def test_ss58_decode_wrong_format() -> None:
    kusama = ss58_encode(DENDRITE_PUB, 2)
    assert ss58_decode(kusama) == DENDRITE_PUB
    with pytest.raises(InvalidAddress, match="invalid SS58 address: wrong format"):
        ss58_decode(kusama, valid_ss58_format=42)
    with pytest.raises(InvalidAddress, match="wrong format"):
        Keypair.from_ss58(kusama, ss58_format=42)


def test_is_valid_ss58_address() -> None:
    assert is_valid_ss58_address(DENDRITE_SS58)
    assert not is_valid_ss58_address(ss58_encode(DENDRITE_PUB, 0))
    assert is_valid_ss58_address(ss58_encode(DENDRITE_PUB, 0), None)
    assert not is_valid_ss58_address("nope")
    assert not is_valid_ss58_address(None)


def test_ss58_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ss58_encode(b"\x00" * 31)
    with pytest.raises(TypeError):
        ss58_encode("0x" + "00" * 32)  # type: ignore[arg-type]
    for bad_format in (-1, 46, 47, 16384):
        with pytest.raises(ValueError, match="ss58_format"):
            ss58_encode(DENDRITE_PUB, bad_format)


# ------------------------------------------------------------------- real vectors


def test_real_request_signature_verifies() -> None:
    pair = Keypair.from_ss58(DENDRITE_SS58)
    assert pair.crypto_type == "sr25519"
    assert pair.ss58_format == 42
    assert pair.public_key == DENDRITE_PUB
    assert pair.verify(REQUEST_MESSAGE, REQUEST_SIGNATURE) is True
    assert pair.verify(REQUEST_MESSAGE.encode(), parse_signature(REQUEST_SIGNATURE)) is True
    assert verify_signature(DENDRITE_SS58, REQUEST_MESSAGE.encode(), parse_signature(REQUEST_SIGNATURE)) is True


def test_real_response_signature_verifies_with_axon_key() -> None:
    signature = parse_signature(RESPONSE_SIGNATURE)
    assert verify_signature(AXON_SS58, RESPONSE_MESSAGE.encode(), signature) is True
    assert verify_signature(DENDRITE_SS58, RESPONSE_MESSAGE.encode(), signature) is False


@pytest.mark.parametrize("index", [0, 10, 31, 32, 63])
def test_real_signature_flipped_byte_fails(index: int) -> None:
    flipped = _flip(REQUEST_SIGNATURE, index)
    assert Keypair.from_ss58(DENDRITE_SS58).verify(REQUEST_MESSAGE, flipped) is False
    assert verify_signature(DENDRITE_SS58, REQUEST_MESSAGE.encode(), flipped) is False


def test_real_signature_wrong_message_or_key_fails() -> None:
    signature = parse_signature(REQUEST_SIGNATURE)
    assert verify_signature(DENDRITE_SS58, REQUEST_MESSAGE.encode() + b"x", signature) is False
    assert verify_signature(AXON_SS58, REQUEST_MESSAGE.encode(), signature) is False
    assert verify_signature(DENDRITE_SS58, REQUEST_MESSAGE.encode(), signature, CRYPTO_ED25519) is False


# ------------------------------------------------------------------ sign / verify


@pytest.mark.parametrize("crypto_type", SUPPORTED_CRYPTO)
def test_sign_verify_round_trip(crypto_type: str) -> None:
    pair = Keypair.generate(crypto_type)
    assert pair.crypto_type == crypto_type
    assert pair.has_private_key
    signature = pair.sign("hello")
    assert isinstance(signature, bytes) and len(signature) == 64
    assert pair.verify("hello", signature) is True
    assert pair.verify(b"hello", signature) is True
    assert pair.verify("hello!", signature) is False
    assert verify_signature(pair.ss58_address, b"hello", signature, crypto_type) is True
    public = Keypair.from_ss58(pair.ss58_address, crypto_type)
    assert public.verify("hello", signature) is True
    assert Keypair.generate(crypto_type).verify("hello", signature) is False


def test_str_message_is_utf8() -> None:
    pair = Keypair.create_from_seed(SEED, CRYPTO_ED25519)
    text = "héllo ✓"
    # ed25519 is deterministic, so the str and its UTF-8 bytes sign identically.
    assert pair.sign(text) == pair.sign(text.encode("utf-8"))
    sr = Keypair.create_from_seed(SEED)
    assert sr.verify(text.encode("utf-8"), sr.sign(text)) is True


def test_ed25519_known_public_key() -> None:
    # RFC 8032 test 1 secret key -> public key.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pair = Keypair.create_from_seed(seed, CRYPTO_ED25519)
    assert pair.public_key.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert pair.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


@pytest.mark.parametrize(("signer", "verifier"), [("sr25519", "ed25519"), ("ed25519", "sr25519")])
def test_cross_crypto_verify_fails(signer: str, verifier: str) -> None:
    pair = Keypair.create_from_seed(SEED, signer)
    signature = pair.sign("message")
    other = Keypair.from_public_key(pair.public_key, verifier)
    assert other.ss58_address == pair.ss58_address
    assert other.verify("message", signature) is False
    assert verify_signature(pair.ss58_address, b"message", signature, verifier) is False


def test_sr25519_signatures_are_randomized_but_valid() -> None:
    pair = Keypair.create_from_seed(SEED)
    first, second = pair.sign("m"), pair.sign("m")
    assert first != second
    assert pair.verify("m", first) and pair.verify("m", second)


@pytest.mark.parametrize("crypto_type", SUPPORTED_CRYPTO)
def test_sign_hex_form(crypto_type: str) -> None:
    pair = Keypair.generate(crypto_type)
    wire = pair.sign_hex("payload")
    assert wire.startswith("0x")
    assert len(wire) == 130
    assert wire == wire.lower()
    assert pair.verify("payload", wire) is True
    assert pair.verify("payload", wire[2:]) is True
    assert pair.verify("payload", parse_signature(wire)) is True


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00" * 64,
        b"\xff" * 64,
        b"x" * 64,
        b"\x01" * 63,
        b"\x01" * 65,
        "",
        "0x",
        "0x" + "zz" * 64,
        "0x" + "00" * 63,
        "0x" + "ab" * 65,
        "not a signature",
        "0x" + "é" * 128,
        None,
        12345,
        ["0x" + "00" * 64],
    ],
)
@pytest.mark.parametrize("crypto_type", SUPPORTED_CRYPTO)
def test_verify_never_raises_on_garbage_signature(garbage: object, crypto_type: str) -> None:
    pair = Keypair.create_from_seed(SEED, crypto_type)
    assert pair.verify("message", garbage) is False  # type: ignore[arg-type]
    assert verify_signature(pair.ss58_address, b"message", garbage, crypto_type) is False  # type: ignore[arg-type]


def test_verify_signature_bad_address_raises_invalid_address() -> None:
    signature = parse_signature(REQUEST_SIGNATURE)
    with pytest.raises(InvalidAddress, match="checksum mismatch"):
        verify_signature(_bad_checksum_address(), REQUEST_MESSAGE.encode(), signature)
    with pytest.raises(InvalidAddress, match="not a string"):
        verify_signature(None, REQUEST_MESSAGE.encode(), signature)  # type: ignore[arg-type]
    with pytest.raises(InvalidAddress, match="wrong format"):
        verify_signature(ss58_encode(DENDRITE_PUB, 0), REQUEST_MESSAGE.encode(), signature)


def test_verify_signature_unknown_crypto() -> None:
    with pytest.raises(ValueError, match="sr25519, ed25519"):
        verify_signature(DENDRITE_SS58, b"m", b"\x00" * 64, "ecdsa")


# --------------------------------------------------------------- parse_signature


def test_parse_signature_accepts_both_forms() -> None:
    raw = bytes.fromhex(REQUEST_SIGNATURE[2:])
    assert parse_signature(REQUEST_SIGNATURE) == raw
    assert parse_signature(REQUEST_SIGNATURE[2:]) == raw
    assert parse_signature(REQUEST_SIGNATURE.upper().replace("0X", "0x")) == raw


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0x" + "zz" * 64, "signature is not hex"),
        ("0x" + "0" * 127, "signature is not hex"),
        ("0x" + "00 " * 64, "signature is not hex"),
        ("0x" + "00" * 63, "signature must be 64 bytes"),
        ("0x" + "00" * 65, "signature must be 64 bytes"),
        ("", "signature must be 64 bytes"),
        (b"\x00" * 64, "signature must be a hex string"),
    ],
)
def test_parse_signature_errors(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_signature(value)  # type: ignore[arg-type]


# ------------------------------------------------------------------ constructors


def test_create_from_seed_hex_forms_agree() -> None:
    from_bytes = Keypair.create_from_seed(SEED)
    assert Keypair.create_from_seed("0x" + SEED.hex()).public_key == from_bytes.public_key
    assert Keypair.create_from_seed(SEED.hex()).public_key == from_bytes.public_key
    assert from_bytes.seed_hex == "0x" + SEED.hex()
    assert from_bytes.seed == SEED
    assert len(from_bytes.private_key) == 64


def test_create_from_seed_is_deterministic_per_crypto() -> None:
    sr_a, sr_b = Keypair.create_from_seed(SEED), Keypair.create_from_seed(SEED)
    ed = Keypair.create_from_seed(SEED, CRYPTO_ED25519)
    assert sr_a.public_key == sr_b.public_key
    assert sr_a == sr_b
    assert ed.public_key != sr_a.public_key
    assert ed.private_key == SEED + ed.public_key


@pytest.mark.parametrize(
    ("seed", "fragment"),
    [
        (b"\x00" * 31, "seed must be 32 bytes, got 31"),
        ("0x" + "00" * 33, "seed must be 32 bytes, got 33"),
        ("0xzz" + "00" * 31, "seed is not valid hex"),
        ("abc", "seed is not valid hex"),
    ],
)
def test_create_from_seed_errors(seed: bytes | str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Keypair.create_from_seed(seed)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Keypair.create_from_seed(SEED, "ecdsa"),
        lambda: Keypair.generate("ecdsa"),
        lambda: Keypair.from_ss58(DENDRITE_SS58, "ecdsa"),
        lambda: Keypair.from_public_key(DENDRITE_PUB, "ecdsa"),
    ],
)
def test_unknown_crypto_type_names_allowed(make: Callable[[], Keypair]) -> None:
    with pytest.raises(ValueError, match="expected one of sr25519, ed25519"):
        make()


def test_from_ss58_cannot_sign() -> None:
    pair = Keypair.from_ss58(DENDRITE_SS58)
    assert pair.has_private_key is False
    assert pair.ss58_address == DENDRITE_SS58
    with pytest.raises(ValueError, match="no private key"):
        pair.sign("message")
    with pytest.raises(ValueError, match="no private key"):
        pair.sign_hex("message")
    with pytest.raises(ValueError, match="no private key"):
        _ = pair.seed_hex
    with pytest.raises(ValueError, match="no private key"):
        _ = pair.private_key


def test_from_ss58_bad_address() -> None:
    with pytest.raises(InvalidAddress, match="checksum mismatch"):
        Keypair.from_ss58(_bad_checksum_address())


def test_from_public_key() -> None:
    pair = Keypair.from_public_key(AXON_PUB)
    assert pair.ss58_address == AXON_SS58
    assert not pair.has_private_key
    with pytest.raises(ValueError, match="32 bytes"):
        Keypair.from_public_key(AXON_PUB[:31])


def test_sign_rejects_non_text_message() -> None:
    with pytest.raises(TypeError, match="message"):
        Keypair.create_from_seed(SEED).sign(123)  # type: ignore[arg-type]


def test_repr_has_no_secrets() -> None:
    pair = Keypair.create_from_seed(SEED)
    text = repr(pair)
    assert pair.ss58_address in text
    assert SEED.hex() not in text
    assert pair.private_key.hex()[:16] not in text


# ------------------------------------------------------------- one address per key


def two_byte_alias(public_key: bytes, ss58_format: int = 42) -> str:
    """``public_key`` in format ``ss58_format`` written with SS58's two-byte prefix form."""
    assert ss58_format < 64
    first = 0b0100_0000 | (ss58_format >> 2)
    second = (ss58_format & 0b11) << 6
    body = bytes([first, second]) + public_key
    checksum = hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2]
    return base58.b58encode(body + checksum).decode()


def _decodes_without_the_canonical_rule(address: str) -> tuple[int, bytes]:
    """What a decoder that accepts both prefix forms reads from ``address``."""
    raw = base58.b58decode(address)
    first, second = raw[0], raw[1]
    fmt = ((first & 0b0011_1111) << 2) | (second >> 6) | ((second & 0b0011_1111) << 8)
    return fmt, raw[2:-2]


@pytest.mark.parametrize("crypto_type", SUPPORTED_CRYPTO)
def test_a_key_has_one_address_string(crypto_type: str) -> None:
    pair = Keypair.generate(crypto_type)
    alias = two_byte_alias(pair.public_key)
    assert alias != pair.ss58_address
    assert _decodes_without_the_canonical_rule(alias) == (42, pair.public_key)  # the same key, another string
    with pytest.raises(InvalidAddress, match="not canonical") as info:
        ss58_decode(alias)
    assert str(info.value) == (
        "invalid SS58 address: not canonical (format 42 takes the one-byte prefix; re-encode the public key)"
    )
    for fmt in (None, 42):
        assert not is_valid_ss58_address(alias, fmt)
    with pytest.raises(InvalidAddress, match="not canonical"):
        Keypair.from_ss58(alias)
    signature = pair.sign(b"message")
    with pytest.raises(InvalidAddress, match="not canonical"):
        verify_signature(alias, b"message", signature, crypto_type)
    assert verify_signature(pair.ss58_address, b"message", signature, crypto_type)


@pytest.mark.parametrize("ss58_format", [0, 2, 42, 63])
def test_every_one_byte_format_refuses_its_two_byte_form(ss58_format: int) -> None:
    alias = two_byte_alias(DENDRITE_PUB, ss58_format)
    with pytest.raises(InvalidAddress, match="not canonical"):
        ss58_decode(alias)
    assert ss58_decode(ss58_encode(DENDRITE_PUB, ss58_format)) == DENDRITE_PUB


def test_every_accepted_address_is_the_encoding_of_its_key() -> None:
    """Whatever decodes re-encodes to the same string: no second string for any key."""
    rng = random.Random(13)
    for _ in range(300):
        key = rng.randbytes(32)
        fmt = rng.choice([0, 2, 42, 63, 64, 255, 1000, 16383])
        for candidate in (ss58_encode(key, fmt), *((two_byte_alias(key, fmt),) if fmt < 64 else ())):
            try:
                decoded = ss58_decode(candidate)
            except InvalidAddress:
                continue
            assert ss58_encode(decoded, Keypair.from_ss58(candidate).ss58_format) == candidate
