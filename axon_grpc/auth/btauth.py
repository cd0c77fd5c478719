"""The ``btauth/1`` signing scheme of Bittensor SDK 11 (``bittensor.http_auth``).

A request proves "sent by hotkey X, to hotkey Y, with exactly this body, recently"
through ``X-Bittensor-*`` headers (lowercase gRPC metadata works: names are matched
case-insensitively). The signed payload is the UTF-8 of::

    "\\n".join(["btauth/1", scheme, METHOD, path, sha256_hex(body), nonce, sender, receiver or "-"])

Over gRPC the method is ``POST`` and the path the gRPC method path
(``/axon.v1.Axon/{Name}``); over HTTP, the request's own method and path. Failures
answer 401 with the SDK's own wording of the reason.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Mapping

from axon_grpc.auth.keys import SUPPORTED_CRYPTO, verify_signature
from axon_grpc.auth.legacy import check_caller_fields, wrong_unit
from axon_grpc.auth.nonces import NonceStore, NonceVerdict
from axon_grpc.errors import InvalidAddress, NonceRefused, NotVerifiedException, ServiceUnavailable
from axon_grpc.schema.contract import RULE_BTAUTH

PROTOCOL = "btauth/1"
VERSION = "1"

HEADER_VERSION = "x-bittensor-version"
HEADER_HOTKEY = "x-bittensor-hotkey"
HEADER_RECEIVER = "x-bittensor-receiver"
HEADER_NONCE = "x-bittensor-nonce"
HEADER_CRYPTO = "x-bittensor-crypto"
HEADER_SIGNATURE = "x-bittensor-signature"

DEFAULT_SCHEME = "sr25519"
NO_RECEIVER = "-"


def is_btauth(headers: Mapping[str, str]) -> bool:
    """Whether a request signs the btauth way (it carries ``X-Bittensor-Version``)."""
    return HEADER_VERSION in headers


def build_payload(
    *, scheme: str, method: str, path: str, body: bytes, nonce: int, sender: str, receiver: str | None
) -> bytes:
    """The exact bytes a btauth signature covers."""
    lines = (
        PROTOCOL,
        scheme,
        method.upper(),
        path,
        hashlib.sha256(body).hexdigest(),
        str(nonce),
        sender,
        receiver or NO_RECEIVER,
    )
    return "\n".join(lines).encode()


def sign_headers(
    keypair: Any,
    *,
    method: str,
    path: str,
    body: bytes,
    receiver: str | None,
    nonce: int | None = None,
    scheme: str = DEFAULT_SCHEME,
) -> dict[str, str]:
    """btauth headers (lowercase names) for a request signed by ``keypair`` with ``scheme``."""
    nonce = time.time_ns() if nonce is None else nonce
    sender = keypair.ss58_address
    payload = build_payload(
        scheme=scheme, method=method, path=path, body=body, nonce=nonce, sender=sender, receiver=receiver
    )
    headers = {
        HEADER_VERSION: VERSION,
        HEADER_HOTKEY: sender,
        HEADER_NONCE: str(nonce),
        HEADER_SIGNATURE: "0x" + bytes(keypair.sign(payload)).hex(),
    }
    if scheme != DEFAULT_SCHEME:
        headers[HEADER_CRYPTO] = scheme
    if receiver is not None:
        headers[HEADER_RECEIVER] = receiver
    return headers


def _is_decimal(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _fail(reason: str, kind: type[NotVerifiedException] = NotVerifiedException) -> NotVerifiedException:
    return kind(f"Not Verified with error: {reason}", rule=RULE_BTAUTH)


def caller_fields(headers: Mapping[str, str]) -> dict[str, Any]:
    """The dendrite terminal-info fields a btauth request names (hotkey, nonce)."""
    fields: dict[str, Any] = {"hotkey": headers.get(HEADER_HOTKEY)}
    nonce = headers.get(HEADER_NONCE, "")
    if _is_decimal(nonce):
        fields["nonce"] = nonce
    return fields


def check_headers(
    headers: Mapping[str, str],
    *,
    receiver: str,
    max_age_s: float,
    allowed_skew_s: float,
    require_receiver: bool = True,
) -> tuple[str, str, int, bytes, str | None]:
    """The checks of :func:`verify_btauth` that need no body: header shape, receiver
    binding, freshness. Returns ``(scheme, sender, nonce, signature, receiver)``.

    Run before a body is read, so a request failing them is refused without its body
    being held (the signature, which covers the body, is checked once it is read).
    """
    if headers.get(HEADER_VERSION) != VERSION:
        raise _fail(f"missing or unsupported X-Bittensor-Version (expected {VERSION!r})")
    sender = headers.get(HEADER_HOTKEY)
    if not sender:
        raise _fail("missing X-Bittensor-Hotkey")
    raw_nonce = headers.get(HEADER_NONCE)
    if raw_nonce is None:
        raise _fail("missing X-Bittensor-Nonce")
    check_caller_fields(hotkey=sender, nonce=raw_nonce)
    if not _is_decimal(raw_nonce):
        raise _fail("X-Bittensor-Nonce is not a decimal integer")
    nonce = int(raw_nonce)
    scheme = headers.get(HEADER_CRYPTO, DEFAULT_SCHEME).lower()
    if scheme not in SUPPORTED_CRYPTO:
        raise _fail("unsupported X-Bittensor-Crypto")
    raw_signature = headers.get(HEADER_SIGNATURE)
    if raw_signature is None:
        raise _fail("missing X-Bittensor-Signature")
    try:
        signature = bytes.fromhex(raw_signature.removeprefix("0x"))
    except ValueError:
        raise _fail("X-Bittensor-Signature is not hex") from None
    bound = headers.get(HEADER_RECEIVER)
    if bound is None:
        if require_receiver:
            raise _fail("missing X-Bittensor-Receiver: this server requires receiver-bound requests")
    elif bound != receiver:
        raise _fail("request was signed for a different receiving hotkey")
    now = time.time_ns()
    unit = wrong_unit(nonce, now)
    if unit is not None:
        raise _fail(unit, NonceRefused)
    if now - nonce > max_age_s * 1e9:
        raise _fail(f"nonce is older than the {max_age_s:g}s freshness window", NonceRefused)
    if nonce - now > allowed_skew_s * 1e9:
        raise _fail(f"nonce is more than {allowed_skew_s:g}s in the future", NonceRefused)
    return scheme, sender, nonce, signature, bound


async def verify_btauth(
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    method: str,
    path: str,
    receiver: str,
    store: NonceStore,
    max_age_s: float,
    allowed_skew_s: float,
    require_receiver: bool = True,
) -> None:
    """Check a btauth request in the SDK's order; store its nonce on success.

    Order: header shape, receiver binding, freshness (:func:`check_headers`), signature,
    replay. The nonce is stored only after the signature verified. Raises
    NotVerifiedException (401); SynapseParsingError (400) for a hotkey or nonce past its
    bound (:func:`~axon_grpc.auth.legacy.check_caller_fields`); ServiceUnavailable (503) when
    the nonce store is full.
    """
    scheme, sender, nonce, signature, bound = check_headers(
        headers,
        receiver=receiver,
        max_age_s=max_age_s,
        allowed_skew_s=allowed_skew_s,
        require_receiver=require_receiver,
    )
    now = time.time_ns()
    if body is None:
        raise _fail("the request body is needed to check a btauth signature")
    payload = build_payload(
        scheme=scheme, method=method, path=path, body=body, nonce=nonce, sender=sender, receiver=bound
    )
    if len(signature) != 64:
        raise _fail("invalid hotkey address or signature encoding")
    try:
        valid = verify_signature(sender, payload, signature, scheme)
    except InvalidAddress:
        raise _fail("invalid hotkey address or signature encoding") from None
    if not valid:
        raise _fail("signature does not verify against the claimed hotkey")
    oldest = now - int(max_age_s * 1e9)
    verdict = await store.check_and_store(f"btauth:{sender}:{nonce}", nonce, oldest)
    if verdict is NonceVerdict.FULL:
        raise ServiceUnavailable("nonce store full")
    if verdict is not NonceVerdict.ACCEPTED:
        raise _fail("this nonce was already accepted from this hotkey", NonceRefused)
