"""The caller's credentials, read from the request's headers or metadata in one pass.

The pipeline reads only the keys it needs (the legacy ``bt_header_dendrite_*``,
``computed_body_hash`` and ``timeout``, btauth/1's ``x-bittensor-*``, or a session call's
``axon-session*``), checks their
shape and bounds, and never builds a synapse from headers: user fields come from the
signed body only. Every caller-chosen string is bounded, so what the nonce store keeps
per request is bounded too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from axon_grpc.auth import btauth
from axon_grpc.auth import session_wire as session
from axon_grpc.auth.legacy import MAX_HOTKEY_CHARS, MAX_NONCE_DIGITS, MAX_UUID_CHARS, MAX_VERSION_DIGITS, malformed
from axon_grpc.schema.contract import RULE_TIMEOUT
from axon_grpc.synapse import TerminalInfo, terminal_info

#: Headers of the legacy scheme.
HOTKEY = "bt_header_dendrite_hotkey"
NONCE = "bt_header_dendrite_nonce"
UUID = "bt_header_dendrite_uuid"
SIGNATURE = "bt_header_dendrite_signature"
VERSION = "bt_header_dendrite_version"
CRYPTO = "bt_header_dendrite_crypto"
BODY_HASH = "computed_body_hash"
TIMEOUT = "timeout"
NAME = "name"  #: the synapse name; when sent, it must be the one called

LEGACY = "legacy"  #: signed ``{nonce}.{hotkey}.{axon}.{uuid}.{body_hash}`` (SDK 7.2-10.5, our Dendrite)
BTAUTH = "btauth"  #: SDK 11's ``btauth/1`` headers, signing method, path and the raw body
#: ``axon-session/1``: a session id, a counter and a MAC (docs/SESSIONS.md); read as hotkey None
#: (the session's, once verified), uuid the session id, nonce the counter, signature the MAC
SESSION = "session"

#: Bounds on caller-chosen strings (characters), checked before anything is parsed: those of
#: :mod:`axon_grpc.auth.legacy`, plus a 64-byte signature's 130 with its ``0x``, a SHA3-256 hex
#: digest's 64 and a timeout's few.
MAX_SIGNATURE = 132
MAX_BODY_HASH = 64
MAX_TIMEOUT = 32

_LIMITS = (
    (HOTKEY, MAX_HOTKEY_CHARS),
    (UUID, MAX_UUID_CHARS),
    (NONCE, MAX_NONCE_DIGITS),
    (VERSION, MAX_VERSION_DIGITS),
    (SIGNATURE, MAX_SIGNATURE),
    (BODY_HASH, MAX_BODY_HASH),
    (TIMEOUT, MAX_TIMEOUT),
    (btauth.HEADER_HOTKEY, MAX_HOTKEY_CHARS),
    (btauth.HEADER_NONCE, MAX_NONCE_DIGITS),
    (btauth.HEADER_SIGNATURE, MAX_SIGNATURE),
    (btauth.HEADER_RECEIVER, MAX_HOTKEY_CHARS),
    (session.SESSION_KEY, session.MAX_SESSION_ID),
    (session.COUNTER_KEY, session.MAX_COUNTER_DIGITS),
    (session.MAC_KEY, session.MAC_HEX),
)


def _integer(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise malformed(f"{name} must be a non-negative decimal integer")
    return int(value)


def _timeout(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise malformed("timeout must be a number of seconds", RULE_TIMEOUT) from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise malformed("timeout must be a positive number of seconds", RULE_TIMEOUT)
    return seconds


@dataclass(eq=False)
class Credentials:
    """Who says they are calling, and what they signed (not yet verified)."""

    scheme: str
    hotkey: str | None
    nonce: int | None
    uuid: str | None
    signature: str | None
    version: int | None
    crypto: str
    body_hash: str
    #: The caller's ``timeout`` header (seconds), None when absent.
    timeout: float | None

    @classmethod
    def read(cls, headers: Mapping[str, str]) -> Credentials:
        """The credentials in ``headers``; raises :class:`SynapseParsingError` (400) on a bad shape."""
        get = headers.get
        for key, limit in _LIMITS:
            value = get(key)
            if value is not None and len(value) > limit:
                raise malformed(f"{key} is longer than {limit} characters")
        timeout = _timeout(get(TIMEOUT))
        if session.SESSION_KEY in headers:  # takes precedence over the signed schemes' keys
            return cls(
                SESSION,
                None,
                _integer(get(session.COUNTER_KEY), session.COUNTER_KEY),
                get(session.SESSION_KEY),
                get(session.MAC_KEY),
                None,
                "",
                "",
                timeout,
            )
        if btauth.HEADER_VERSION in headers:
            raw_nonce = get(btauth.HEADER_NONCE)
            nonce = int(raw_nonce) if raw_nonce is not None and raw_nonce.isascii() and raw_nonce.isdigit() else None
            return cls(
                BTAUTH,
                get(btauth.HEADER_HOTKEY),
                nonce,
                None,
                get(btauth.HEADER_SIGNATURE),
                None,
                get(btauth.HEADER_CRYPTO, btauth.DEFAULT_SCHEME),
                "",
                timeout,
            )
        return cls(
            LEGACY,
            get(HOTKEY),
            _integer(get(NONCE), NONCE),
            get(UUID),
            get(SIGNATURE),
            _integer(get(VERSION), VERSION),
            get(CRYPTO, "sr25519"),
            get(BODY_HASH, ""),
            timeout,
        )

    def dendrite(self, peer_ip: str | None, peer_port: int | None) -> TerminalInfo:
        """The caller's terminal info as the synapse carries it (values already checked)."""
        return terminal_info(
            hotkey=self.hotkey,
            nonce=self.nonce,
            uuid=self.uuid,
            signature=self.signature,
            version=self.version,
            ip=peer_ip,
            port=peer_port,
        )
