"""``axon-session/1`` on the wire: the messages, the signed transcripts, the key and the MAC.

Both ends use this module (the axon's :mod:`~axon_grpc.auth.sessions`, the client's
:mod:`~axon_grpc.client.sessions`, the test vectors): docs/SESSIONS.md and rules R24-R27
of docs/SPEC.md. The key exchange is X25519 (libsodium through PyNaCl); the key is derived
with HKDF-SHA256 (RFC 5869) and calls are authenticated with HMAC-SHA256 (RFC 2104).

``SessionOpen`` and ``SessionAccept`` are the protobuf messages of ``proto/axon/v1/axon.proto``,
encoded and decoded here (a handful of scalar fields): decoding is strict about sizes and
wire types, and skips unknown fields as protobuf does.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import nacl.bindings
import nacl.exceptions

from axon_grpc.streaming import varint

#: The one version of the protocol; what the announcement trailer lists.
VERSION = "axon-session/1"
#: Trailer of every gRPC answer of an axon serving sessions (R24).
ANNOUNCE_TRAILER = "axon-sessions"
#: The handshake method (R25), outside the synapses' service.
OPEN_METHOD = "/axon.v1.Session/Open"

#: Labels: the first line of each signed or MACed string, one per direction and purpose.
OPEN_LABEL = f"{VERSION} open"
ACCEPT_LABEL = f"{VERSION} accept"
CALL_LABEL = f"{VERSION} call"
#: HKDF ``info``: the key MACs the caller's calls (the only direction that is MACed).
KEY_INFO = CALL_LABEL.encode()

#: Metadata of a session call (R27).
SESSION_KEY = "axon-session"
COUNTER_KEY = "axon-session-counter"
MAC_KEY = "axon-session-mac"

KEY_BYTES = 32  #: X25519 keys and the session key
MAX_SESSION_ID = 64
MAX_COUNTER_DIGITS = 20
MAC_HEX = 64
#: A SessionOpen is a few hundred bytes; larger is refused before it is decoded.
MAX_MESSAGE_BYTES = 1024


def session_id_fits(session_id: str) -> bool:
    """Whether ``session_id`` can be a session id: 1 to 64 printable ASCII characters, no space (it
    is sent as metadata, which carries nothing else unchanged)."""
    return 0 < len(session_id) <= MAX_SESSION_ID and all("!" <= c <= "~" for c in session_id)


class WireFormatError(ValueError):
    """A message that does not decode (its text says what is wrong)."""


# -- protobuf: varints, strings, bytes; nothing else is needed ---------------------------------


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(at, min(at + 10, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value >> 64:
                raise WireFormatError("varint above 64 bits")
            return value, i + 1
        shift += 7
    raise WireFormatError("truncated or overlong varint")


class _Message:
    """A protobuf message of scalar fields: ``FIELDS`` maps field number to (name, kind)."""

    FIELDS: ClassVar[dict[int, tuple[str, str]]] = {}

    def encode(self) -> bytes:
        out = bytearray()
        for number, (name, kind) in self.FIELDS.items():
            value = getattr(self, name)
            if not value:  # proto3: defaults are not sent
                continue
            if kind == "uint":
                out += varint(number << 3) + varint(int(value))
            else:
                raw = value.encode() if kind == "string" else bytes(value)
                out += varint(number << 3 | 2) + varint(len(raw)) + raw
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Any:
        if len(data) > MAX_MESSAGE_BYTES:
            raise WireFormatError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
        values: dict[str, Any] = {}
        at = 0
        while at < len(data):
            tag, at = _read_varint(data, at)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise WireFormatError("field number 0")
            known = cls.FIELDS.get(number)
            value: Any
            if wire == 0:
                value, at = _read_varint(data, at)
            elif wire == 2:
                length, at = _read_varint(data, at)
                if at + length > len(data):
                    raise WireFormatError("truncated field")
                value, at = data[at : at + length], at + length
            elif wire in (1, 5):  # fixed64, fixed32 of an unknown field
                at += 8 if wire == 1 else 4
                if at > len(data):
                    raise WireFormatError("truncated field")
                continue
            else:
                raise WireFormatError(f"unsupported wire type {wire}")
            if known is None:
                continue
            name, kind = known
            if (kind == "uint") != (wire == 0):
                raise WireFormatError(f"field {name} has the wrong wire type")
            if kind == "string":
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    raise WireFormatError(f"field {name} is not UTF-8") from None
            values[name] = value
        return cls(**values)


@dataclass
class SessionOpen(_Message):
    """The caller's open (R25)."""

    version: str = ""
    crypto: str = ""
    dendrite_hotkey: str = ""
    axon_hotkey: str = ""
    ephemeral_key: bytes = b""
    nonce: int = 0
    signature: str = ""

    FIELDS: ClassVar[dict[int, tuple[str, str]]] = {
        1: ("version", "string"),
        2: ("crypto", "string"),
        3: ("dendrite_hotkey", "string"),
        4: ("axon_hotkey", "string"),
        5: ("ephemeral_key", "bytes"),
        6: ("nonce", "uint"),
        7: ("signature", "string"),
    }

    def transcript(self) -> str:
        """What the caller signs: the open's fields under the ``open`` label."""
        return "\n".join(
            (
                OPEN_LABEL,
                self.version,
                self.crypto,
                self.dendrite_hotkey,
                self.axon_hotkey,
                self.ephemeral_key.hex(),
                str(self.nonce),
            )
        )


@dataclass
class SessionAccept(_Message):
    """The axon's answer to an open (R26)."""

    version: str = ""
    dendrite_hotkey: str = ""
    axon_hotkey: str = ""
    dendrite_ephemeral_key: bytes = b""
    axon_ephemeral_key: bytes = b""
    nonce: int = 0
    session_id: str = ""
    lifetime_s: int = 0
    max_calls: int = 0
    window: int = 0
    signature: str = ""

    FIELDS: ClassVar[dict[int, tuple[str, str]]] = {
        1: ("version", "string"),
        2: ("dendrite_hotkey", "string"),
        3: ("axon_hotkey", "string"),
        4: ("dendrite_ephemeral_key", "bytes"),
        5: ("axon_ephemeral_key", "bytes"),
        6: ("nonce", "uint"),
        7: ("session_id", "string"),
        8: ("lifetime_s", "uint"),
        9: ("max_calls", "uint"),
        10: ("window", "uint"),
        11: ("signature", "string"),
    }

    def transcript(self) -> str:
        """What the axon signs: both hotkeys, both ephemeral keys, the nonce, the version and
        the session's terms, under the ``accept`` label."""
        return "\n".join(
            (
                ACCEPT_LABEL,
                self.version,
                self.dendrite_hotkey,
                self.axon_hotkey,
                self.dendrite_ephemeral_key.hex(),
                self.axon_ephemeral_key.hex(),
                str(self.nonce),
                self.session_id,
                str(self.lifetime_s),
                str(self.max_calls),
                str(self.window),
            )
        )


def echo_problem(open_: SessionOpen, accept: SessionAccept) -> str | None:
    """Which field of ``accept`` is not the one ``open_`` sent, or None (the client's check, R26)."""
    echoes = (
        ("version", open_.version, accept.version),
        ("dendrite_hotkey", open_.dendrite_hotkey, accept.dendrite_hotkey),
        ("axon_hotkey", open_.axon_hotkey, accept.axon_hotkey),
        ("dendrite_ephemeral_key", open_.ephemeral_key, accept.dendrite_ephemeral_key),
        ("nonce", open_.nonce, accept.nonce),
    )
    for name, sent, echoed in echoes:
        if sent != echoed:
            return f"{name} is not the one sent"
    return None


# -- the key --------------------------------------------------------------------------------------


def ephemeral_keypair() -> tuple[bytes, bytes]:
    """A new X25519 ``(private, public)`` pair."""
    public, private = nacl.bindings.crypto_box_keypair()
    return private, public


def public_key_of(private: bytes) -> bytes:
    """The X25519 public key of ``private`` (for fixed test keys)."""
    return nacl.bindings.crypto_scalarmult_base(private)  # type: ignore[no-any-return]


def shared_secret(private: bytes, peer_public: bytes) -> bytes:
    """X25519 of ``private`` and ``peer_public``; raises ValueError for a key of the wrong size or
    one giving the all-zero secret (a low-order point: no secret at all)."""
    if len(peer_public) != KEY_BYTES:
        raise ValueError(f"an X25519 public key has {KEY_BYTES} bytes")
    try:
        shared = nacl.bindings.crypto_scalarmult(private, peer_public)
    except nacl.exceptions.RuntimeError:
        raise ValueError("the X25519 public key is of low order") from None
    if not any(shared):
        raise ValueError("the X25519 public key is of low order")
    return shared  # type: ignore[no-any-return]


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    """HKDF with SHA-256 (RFC 5869): extract with ``salt``, expand with ``info`` to ``length`` bytes."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


def transcript_hash(open_: SessionOpen, accept: SessionAccept) -> bytes:
    """SHA-256 of the open transcript, a newline and the accept transcript: the HKDF salt."""
    return hashlib.sha256(f"{open_.transcript()}\n{accept.transcript()}".encode()).digest()


def session_key(private: bytes, peer_public: bytes, open_: SessionOpen, accept: SessionAccept) -> bytes:
    """The session key: HKDF-SHA256 of the X25519 secret, salted with the transcripts' hash."""
    return hkdf_sha256(shared_secret(private, peer_public), transcript_hash(open_, accept), KEY_INFO)


# -- calls ----------------------------------------------------------------------------------------


def mac_message(session_id: str, counter: int, method: str, body_hash: str, timeout: str | None) -> bytes:
    """What a session call's MAC covers (R27): labelled, one value per line."""
    return f"{CALL_LABEL}\n{session_id}\n{counter}\n{method}\n{body_hash}\n{timeout or ''}".encode()


def call_mac(key: bytes, session_id: str, counter: int, method: str, body_hash: str, timeout: str | None) -> str:
    """The ``axon-session-mac`` value: lowercase hex HMAC-SHA256 of :func:`mac_message`."""
    return hmac.new(key, mac_message(session_id, counter, method, body_hash, timeout), hashlib.sha256).hexdigest()


def message_fields(message: Any) -> dict[str, Any]:
    """A message's fields by name, bytes as lowercase hex (for the test vectors)."""
    out: dict[str, Any] = {}
    for f in fields(message):
        value = getattr(message, f.name)
        out[f.name] = value.hex() if isinstance(value, bytes) else value
    return out
