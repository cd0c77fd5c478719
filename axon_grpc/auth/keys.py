"""Keypairs, signatures and SS58 addresses (sr25519 and ed25519).

sr25519 signatures use substrate's signing context (``b"substrate"``), as Bittensor
does. Signatures travel as ``"0x"`` + 128 lowercase hex characters.

One public key has one address string per format: a format below 64 must use the
one-byte prefix (:func:`ss58_encode`'s form). SS58 also lets such a format be written
with the two-byte prefix, which decodes to the same key under another string, and
would let a caller walk past a deny-list on the hotkey string; decoding refuses it.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import os

import base58
import nacl.exceptions
import nacl.signing
import sr25519

from axon_grpc.errors import InvalidAddress

CRYPTO_SR25519 = "sr25519"
CRYPTO_ED25519 = "ed25519"
SUPPORTED_CRYPTO: tuple[str, ...] = (CRYPTO_SR25519, CRYPTO_ED25519)

#: The SS58 network format Bittensor uses.
SS58_FORMAT = 42

PUBLIC_KEY_LENGTH = 32
SEED_LENGTH = 32
SIGNATURE_LENGTH = 64

_SS58_PREFIX = b"SS58PRE"
_SS58_CHECKSUM_LENGTH = 2
_SS58_MAX_FORMAT = 16383
_SS58_RESERVED_FORMATS = frozenset({46, 47})
# A 2-byte prefix + 32-byte key + 2-byte checksum is 36 bytes, at most 50 base58 chars.
_SS58_MAX_CHARS = 50
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_CHARS = frozenset(_B58_ALPHABET)

_VERIFY_CACHE_SIZE = 65536


def _check_crypto(crypto_type: str) -> str:
    if crypto_type not in SUPPORTED_CRYPTO:
        raise ValueError(f"unsupported crypto_type {crypto_type!r}; expected one of {', '.join(SUPPORTED_CRYPTO)}")
    return crypto_type


def _as_bytes(data: str | bytes | bytearray | memoryview, what: str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be str or bytes, not {type(data).__name__}")


def _unhex(value: str) -> bytes:
    """Strict hex decode of ``value`` with an optional ``0x`` prefix (raises ValueError)."""
    if value[:2] in ("0x", "0X"):
        value = value[2:]
    return binascii.unhexlify(value)


# ---------------------------------------------------------------------------- SS58


def _ss58_prefix(ss58_format: int) -> bytes:
    if isinstance(ss58_format, bool) or not isinstance(ss58_format, int):
        raise TypeError("ss58_format must be an int")
    if not 0 <= ss58_format <= _SS58_MAX_FORMAT or ss58_format in _SS58_RESERVED_FORMATS:
        raise ValueError(f"invalid ss58_format {ss58_format}; expected 0..16383 except 46 and 47")
    if ss58_format < 64:
        return bytes([ss58_format])
    first = ((ss58_format & 0b1111_1100) >> 2) | 0b0100_0000
    second = (ss58_format >> 8) | ((ss58_format & 0b11) << 6)
    return bytes([first, second])


def _ss58_checksum(data: bytes) -> bytes:
    return hashlib.blake2b(_SS58_PREFIX + data, digest_size=64).digest()[:_SS58_CHECKSUM_LENGTH]


def ss58_encode(public_key: bytes, ss58_format: int = SS58_FORMAT) -> str:
    """SS58 address of a 32-byte public key."""
    if not isinstance(public_key, (bytes, bytearray, memoryview)):
        raise TypeError(f"public_key must be bytes, not {type(public_key).__name__}")
    key = bytes(public_key)
    if len(key) != PUBLIC_KEY_LENGTH:
        raise ValueError(f"public key must be {PUBLIC_KEY_LENGTH} bytes, got {len(key)}")
    body = _ss58_prefix(ss58_format) + key
    return base58.b58encode(body + _ss58_checksum(body)).decode("ascii")


def _ss58_decode_full(address: object) -> tuple[int, bytes]:
    """``(format, public_key)`` of an SS58 address; raises InvalidAddress."""
    if not isinstance(address, str):
        raise InvalidAddress("invalid SS58 address: not a string")
    if not address:
        raise InvalidAddress("invalid SS58 address: empty")
    if len(address) > _SS58_MAX_CHARS:
        raise InvalidAddress("invalid SS58 address: wrong length")
    if not _B58_CHARS.issuperset(address):
        raise InvalidAddress("invalid SS58 address: invalid base58 character")
    raw = base58.b58decode(address)
    if not raw:
        raise InvalidAddress("invalid SS58 address: wrong length")
    first = raw[0]
    if first < 64:
        prefix_len = 1
        ss58_format = first
    elif first < 128:
        if len(raw) < 2:
            raise InvalidAddress("invalid SS58 address: wrong length")
        prefix_len = 2
        second = raw[1]
        ss58_format = ((first & 0b0011_1111) << 2) | (second >> 6) | ((second & 0b0011_1111) << 8)
    else:
        raise InvalidAddress("invalid SS58 address: invalid format prefix")
    if len(raw) != prefix_len + PUBLIC_KEY_LENGTH + _SS58_CHECKSUM_LENGTH:
        raise InvalidAddress("invalid SS58 address: wrong length")
    body, checksum = raw[:-_SS58_CHECKSUM_LENGTH], raw[-_SS58_CHECKSUM_LENGTH:]
    if _ss58_checksum(body) != checksum:
        raise InvalidAddress("invalid SS58 address: checksum mismatch")
    if ss58_format in _SS58_RESERVED_FORMATS:
        raise InvalidAddress("invalid SS58 address: reserved format")
    if prefix_len == 2 and ss58_format < 64:
        raise InvalidAddress(
            f"invalid SS58 address: not canonical (format {ss58_format} takes the one-byte prefix; "
            "re-encode the public key)"
        )
    return ss58_format, body[prefix_len:]


def ss58_decode(address: str, valid_ss58_format: int | None = None) -> bytes:
    """32-byte public key of an SS58 address; raises InvalidAddress on any failure."""
    ss58_format, public_key = _ss58_decode_full(address)
    if valid_ss58_format is not None and ss58_format != valid_ss58_format:
        raise InvalidAddress("invalid SS58 address: wrong format")
    return public_key


def is_valid_ss58_address(address: object, valid_ss58_format: int | None = SS58_FORMAT) -> bool:
    """Whether ``address`` decodes (in ``valid_ss58_format`` unless that is None)."""
    try:
        ss58_decode(address, valid_ss58_format)  # type: ignore[arg-type]
    except InvalidAddress:
        return False
    return True


# ---------------------------------------------------------------------- signatures


def parse_signature(value: str) -> bytes:
    """64 signature bytes from ``"0x"`` + 128 hex chars (prefix optional); raises ValueError."""
    if not isinstance(value, str):
        raise ValueError("signature must be a hex string")
    try:
        raw = _unhex(value)
    except ValueError:
        raise ValueError("signature is not hex") from None
    if len(raw) != SIGNATURE_LENGTH:
        raise ValueError(f"signature must be {SIGNATURE_LENGTH} bytes")
    return raw


def _coerce_signature(signature: object) -> bytes | None:
    """Signature bytes, or None if malformed."""
    if isinstance(signature, str):
        try:
            return parse_signature(signature)
        except ValueError:
            return None
    if isinstance(signature, (bytes, bytearray, memoryview)):
        raw = bytes(signature)
        return raw if len(raw) == SIGNATURE_LENGTH else None
    return None


def _verify_raw(crypto_type: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Verify with a checked 64-byte signature; never raises on bad input."""
    if crypto_type == CRYPTO_SR25519:
        try:
            return bool(sr25519.verify(signature, message, public_key))
        except (ValueError, TypeError):
            return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


@functools.lru_cache(maxsize=_VERIFY_CACHE_SIZE)
def _cached_public_key(address: str, ss58_format: int) -> bytes:
    return ss58_decode(address, ss58_format)


def verify_signature(
    ss58_address: str,
    message: bytes,
    signature: bytes,
    crypto_type: str = CRYPTO_SR25519,
    ss58_format: int = SS58_FORMAT,
) -> bool:
    """Whether ``signature`` over ``message`` is by ``ss58_address``.

    Raises InvalidAddress for an address that does not decode (in ``ss58_format``);
    a malformed signature gives False. Address decodes are LRU-cached.
    """
    _check_crypto(crypto_type)
    if not isinstance(ss58_address, str):
        raise InvalidAddress("invalid SS58 address: not a string")
    public_key = _cached_public_key(ss58_address, ss58_format)
    raw = _coerce_signature(signature)
    if raw is None:
        return False
    return _verify_raw(crypto_type, public_key, _as_bytes(message, "message"), raw)


# ------------------------------------------------------------------------ Keypair


class Keypair:
    """A sr25519 or ed25519 keypair; public-only instances can verify but not sign."""

    __slots__ = ("_ed_key", "_seed", "_sr_secret", "crypto_type", "public_key", "ss58_address", "ss58_format")

    crypto_type: str
    public_key: bytes
    ss58_address: str
    ss58_format: int

    def __init__(
        self,
        public_key: bytes,
        crypto_type: str = CRYPTO_SR25519,
        ss58_format: int = SS58_FORMAT,
    ) -> None:
        """A public-only keypair; use the ``create_from_seed``/``generate`` constructors to sign."""
        self.crypto_type = _check_crypto(crypto_type)
        self.ss58_address = ss58_encode(public_key, ss58_format)
        self.public_key = bytes(public_key)
        self.ss58_format = ss58_format
        self._seed: bytes | None = None
        self._sr_secret: bytes | None = None
        self._ed_key: nacl.signing.SigningKey | None = None

    # constructors

    @classmethod
    def create_from_seed(
        cls,
        seed: bytes | str,
        crypto_type: str = CRYPTO_SR25519,
        ss58_format: int = SS58_FORMAT,
    ) -> Keypair:
        """Keypair from a 32-byte seed (bytes, or hex with or without ``0x``)."""
        _check_crypto(crypto_type)
        if isinstance(seed, str):
            try:
                raw = _unhex(seed)
            except ValueError:
                raise ValueError("seed is not valid hex") from None
        elif isinstance(seed, (bytes, bytearray, memoryview)):
            raw = bytes(seed)
        else:
            raise TypeError(f"seed must be bytes or a hex string, not {type(seed).__name__}")
        if len(raw) != SEED_LENGTH:
            raise ValueError(f"seed must be {SEED_LENGTH} bytes, got {len(raw)}")
        if crypto_type == CRYPTO_SR25519:
            public, secret = sr25519.pair_from_seed(raw)
            pair = cls(bytes(public), crypto_type, ss58_format)
            pair._sr_secret = bytes(secret)
        else:
            signing_key = nacl.signing.SigningKey(raw)
            pair = cls(bytes(signing_key.verify_key), crypto_type, ss58_format)
            pair._ed_key = signing_key
        pair._seed = raw
        return pair

    @classmethod
    def generate(cls, crypto_type: str = CRYPTO_SR25519, ss58_format: int = SS58_FORMAT) -> Keypair:
        """A new keypair from a random seed."""
        return cls.create_from_seed(os.urandom(SEED_LENGTH), crypto_type, ss58_format)

    @classmethod
    def from_ss58(
        cls,
        address: str,
        crypto_type: str = CRYPTO_SR25519,
        ss58_format: int | None = None,
    ) -> Keypair:
        """Public-only keypair for an address (its format must equal ``ss58_format`` if given)."""
        _check_crypto(crypto_type)
        found_format, public_key = _ss58_decode_full(address)
        if ss58_format is not None and found_format != ss58_format:
            raise InvalidAddress("invalid SS58 address: wrong format")
        return cls(public_key, crypto_type, found_format)

    @classmethod
    def from_public_key(
        cls,
        public_key: bytes,
        crypto_type: str = CRYPTO_SR25519,
        ss58_format: int = SS58_FORMAT,
    ) -> Keypair:
        """Public-only keypair for a 32-byte public key."""
        return cls(public_key, crypto_type, ss58_format)

    # secrets

    @property
    def has_private_key(self) -> bool:
        """Whether this keypair can sign."""
        return self._seed is not None

    def _require_secret(self) -> bytes:
        if self._seed is None:
            raise ValueError("keypair has no private key (public only); it can verify but not sign")
        return self._seed

    @property
    def seed(self) -> bytes:
        """The 32-byte seed (raises ValueError if public only)."""
        return self._require_secret()

    @property
    def seed_hex(self) -> str:
        """``"0x"`` + hex of the 32-byte seed (raises ValueError if public only)."""
        return "0x" + self._require_secret().hex()

    @property
    def private_key(self) -> bytes:
        """64-byte secret key: sr25519 secret, or ed25519 seed + public key."""
        self._require_secret()
        if self._sr_secret is not None:
            return self._sr_secret
        assert self._ed_key is not None
        return bytes(self._ed_key) + self.public_key

    # signing

    def sign(self, message: str | bytes) -> bytes:
        """64-byte signature of ``message`` (str is UTF-8 encoded)."""
        data = _as_bytes(message, "message")
        self._require_secret()
        if self._sr_secret is not None:
            return bytes(sr25519.sign((self.public_key, self._sr_secret), data))
        assert self._ed_key is not None
        return bytes(self._ed_key.sign(data).signature)

    def sign_hex(self, message: str | bytes) -> str:
        """Signature as ``"0x"`` + lowercase hex (the wire form)."""
        return "0x" + self.sign(message).hex()

    def verify(self, message: str | bytes, signature: bytes | str) -> bool:
        """Whether ``signature`` (64 bytes or hex) is valid for ``message``; never raises on a bad signature."""
        data = _as_bytes(message, "message")
        raw = _coerce_signature(signature)
        if raw is None:
            return False
        return _verify_raw(self.crypto_type, self.public_key, data, raw)

    def __repr__(self) -> str:
        return f"<Keypair {self.crypto_type} {self.ss58_address}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keypair):
            return NotImplemented
        return self.crypto_type == other.crypto_type and self.public_key == other.public_key

    def __hash__(self) -> int:
        return hash((self.crypto_type, self.public_key))


__all__ = [
    "CRYPTO_ED25519",
    "CRYPTO_SR25519",
    "SS58_FORMAT",
    "SUPPORTED_CRYPTO",
    "Keypair",
    "is_valid_ss58_address",
    "parse_signature",
    "ss58_decode",
    "ss58_encode",
    "verify_signature",
]
