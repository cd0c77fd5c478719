"""The legacy signing scheme (``bt_header_*``): signed message, nonce rules, verification.

Rules are PROTOCOL.md's, with the documented hardening: a signature is always
required, the client-chosen ``timeout`` widens the freshness window by at most
``max_timeout_s``, nonces too far in the future are refused (so the bounded nonce
store stays bounded), dendrites older than 7.2.0 (which skip the freshness check)
are refused unless the operator allows them, and the strings a caller chooses have
bounded lengths (:func:`check_caller_fields`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from axon_grpc.auth.keys import SUPPORTED_CRYPTO, parse_signature, verify_signature
from axon_grpc.auth.nonces import NonceStore, NonceVerdict
from axon_grpc.errors import (
    BodyHashMismatch,
    InvalidAddress,
    NonceRefused,
    NotVerifiedException,
    ServiceUnavailable,
    SynapseParsingError,
)
from axon_grpc.schema.contract import (
    RULE_BODY_HASH,
    RULE_KEY_TYPE,
    RULE_NAME_VERSION,
    RULE_NONCE,
    RULE_REPLAY,
    RULE_REQUIRED,
    RULE_SHAPES,
    RULE_SIGNATURE,
    RULE_SIGNATURE_ENCODING,
    RULE_SS58,
)
from axon_grpc.synapse import Synapse

#: First dendrite version that sends nonces as ``time.time_ns()`` (freshness checked).
V_7_2_0 = 7002000

#: The wire protocol version this project speaks (that of Bittensor SDK 10.5.0).
PROTOCOL_VERSION = 10_005_000

#: Metadata key naming the caller's key type; absent means sr25519.
CRYPTO_HEADER = "bt_header_dendrite_crypto"

#: How long a nonce store keeps keys when no freshness rule guards an evicted one
#: (about 146 years: for as long as the process, or the Redis key, lives).
UNBOUNDED_RETENTION_NS = 2**62

# Bounds on the strings a caller chooses; each is kept in the nonce store and the logs.
MAX_HOTKEY_CHARS = 50  #: the longest SS58 address of a 32-byte key; the decoder says what else is wrong
MAX_UUID_CHARS = 64  #: a dendrite's ``uuid1`` string has 36; room for other clients' ids
MAX_NONCE_DIGITS = 20  #: ``time.time_ns()`` has 19 digits until the year 2286
MAX_VERSION_DIGITS = 10  #: ``major * 10**6 + minor * 10**3 + patch``: 8 digits for 10.5.0


def _over_digits(value: int | str, limit: int) -> bool:
    """Whether ``value`` has more than ``limit`` digits, sign aside (an int is not printed)."""
    if isinstance(value, int):
        return abs(value) >= 10**limit
    return len(value.lstrip("+-")) > limit


def check_caller_fields(
    *,
    hotkey: str | None = None,
    uuid: str | None = None,
    nonce: int | str | None = None,
    version: int | str | None = None,
) -> None:
    """Refuse a caller-chosen hotkey, uuid, nonce or version past its bound.

    Fields given as None are not checked. Raises
    :class:`~axon_grpc.errors.SynapseParsingError` (400) naming the field and its bound.
    """
    if hotkey is not None and len(hotkey) > MAX_HOTKEY_CHARS:
        raise malformed(f"The hotkey is longer than {MAX_HOTKEY_CHARS} characters")
    if uuid is not None and len(uuid) > MAX_UUID_CHARS:
        raise malformed(f"The uuid is longer than {MAX_UUID_CHARS} characters")
    if nonce is not None and _over_digits(nonce, MAX_NONCE_DIGITS):
        raise malformed(f"The nonce has more than {MAX_NONCE_DIGITS} digits")
    if version is not None and _over_digits(version, MAX_VERSION_DIGITS):
        raise malformed(f"The version has more than {MAX_VERSION_DIGITS} digits")


def malformed(reason: str, rule: str = RULE_SHAPES) -> SynapseParsingError:
    """400 ``Improperly formatted request. {reason}``: a value of the wrong shape or size (rule R4)."""
    return SynapseParsingError(f"Improperly formatted request. {reason}", rule=rule)


@dataclass(frozen=True)
class VerifyPolicy:
    """Tunable bounds of the legacy nonce rules."""

    base_window_s: float = 4.0  #: freshness allowance before the client timeout is added
    max_timeout_s: float = 60.0  #: cap on the client timeout's contribution to the window
    max_future_s: float = 30.0  #: how far ahead of our clock a nonce may be
    allow_legacy_versions: bool = False  #: accept dendrites < 7.2.0 (no freshness check)
    btauth_max_age_s: float = 10.0  #: btauth: how old a nonce may be
    btauth_allowed_skew_s: float = 2.0  #: btauth: how far ahead of our clock a nonce may be
    btauth_require_receiver: bool = True  #: btauth: refuse requests not bound to our hotkey

    @property
    def retention_ns(self) -> int:
        """How long the nonce store must remember a key: the widest window plus skew.

        Unbounded (:data:`UNBOUNDED_RETENTION_NS`) when dendrites older than 7.2.0 are
        allowed: their nonces (``time.monotonic_ns()``) pass no freshness rule, and the
        version is unsigned, so any captured request could be replayed as one of theirs
        once its key is forgotten. Keys are then kept for as long as the store lives.
        """
        if self.allow_legacy_versions:
            return UNBOUNDED_RETENTION_NS
        return int((self.base_window_s + self.max_timeout_s + self.max_future_s) * 1e9)

    @property
    def btauth_retention_ns(self) -> int:
        """How long a btauth nonce must be remembered: its whole window."""
        return int((self.btauth_max_age_s + self.btauth_allowed_skew_s) * 1e9)


def reply_hash(body: bytes) -> str:
    """What a signed gRPC answer's signature covers: SHA3-256 of the response message bytes."""
    return hashlib.sha3_256(body).hexdigest()


def grpc_body_hash(method: str, body: bytes) -> str:
    """The gRPC ``computed_body_hash``: lowercase hex SHA3-256 of the method path (UTF-8,
    e.g. ``/axon.v1.Axon/Dummy``), one newline and the request message bytes as sent.

    Covering the method binds the signature to the synapse: a call signed for one method
    does not verify at another (a path never holds a newline, so the split is unambiguous).
    """
    digest = hashlib.sha3_256(method.encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def signed_message(
    nonce: int | None, dendrite_hotkey: str | None, axon_hotkey: str, uuid: str | None, body_hash: str | None
) -> str:
    """``{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}``: what a dendrite signs
    (docs/SPEC.md rule R9)."""
    return f"{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}"


#: What the body hash rule (R7) answers a request whose hash is of the message bytes alone:
#: the rule of axon.v1 before the hash covered the method path.
HASH_WITHOUT_METHOD = "body hash must cover the method path"
HASH_NOT_LOWER_HEX = "computed_body_hash must be 64 lowercase hex digits"
HASH_MISMATCH = (
    "body hash does not match: computed_body_hash is the SHA3-256 of the method path, "
    "a newline and the message bytes as sent"
)


def check_grpc_body_hash(method: str, body: bytes, claimed: str) -> None:
    """Raise :class:`~axon_grpc.errors.BodyHashMismatch` (400, rule R7) unless ``claimed`` is
    :func:`grpc_body_hash` of ``method`` and ``body``, saying what is wrong with it (never
    the hashes: the caller has its own, and ours would only cost bytes)."""
    if grpc_body_hash(method, body) == claimed:
        return
    if hashlib.sha3_256(body).hexdigest() == claimed:
        reason = HASH_WITHOUT_METHOD
    elif claimed != claimed.lower() or len(claimed) != 64:
        reason = HASH_NOT_LOWER_HEX
    else:
        reason = HASH_MISMATCH
    raise BodyHashMismatch(reason, rule=RULE_BODY_HASH)


def request_message(synapse: Synapse, axon_hotkey: str) -> str:
    """:func:`signed_message` of a synapse's dendrite info, to ``axon_hotkey``."""
    d = synapse.dendrite
    assert d is not None
    return signed_message(d.nonce, d.hotkey, axon_hotkey, d.uuid, synapse.computed_body_hash)


def response_message(axon_nonce: int, dendrite_hotkey: str | None, axon_hotkey: str, axon_uuid: str) -> str:
    """``{axon_nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}``: what the axon signs."""
    return f"{axon_nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}"


#: Request key asking the axon to sign its answer (``1``); the axon's ``sign_answers`` signs every answer.
SIGN_ANSWER_HEADER = "bt_header_sign_answer"
#: First part of a signed answer's message: names the scheme, so no other signed string can pass as one.
ANSWER_TAG = "answer/1"


def answer_message(
    request_nonce: int | None, dendrite_hotkey: str | None, axon_hotkey: str, request_uuid: str | None, body_hash: str
) -> str:
    """``answer/1.{request_nonce}.{dendrite_hotkey}.{axon_hotkey}.{request_uuid}.{body_hash}``: what an
    axon signs to vouch for an answer (``request_uuid`` is empty for btauth requests, which have none)."""
    return f"{ANSWER_TAG}.{request_nonce}.{dendrite_hotkey}.{axon_hotkey}.{request_uuid or ''}.{body_hash}"


#: The SDK 10.5 axon's reason for a request without a caller hotkey: its ``default_verify``
#: builds ``Keypair(ss58_address=None)``, and the key library refuses with this text.
MISSING_HOTKEY = "No SS58 formatted address or public key provided."


#: The units a nonce is mistaken for, and how many of them make a nanosecond count.
_NONCE_UNITS = (("seconds", 10**9), ("milliseconds", 10**6), ("microseconds", 10**3))


def nonce_unit(nonce: int, now_ns: int) -> str | None:
    """``"seconds"``, ``"milliseconds"`` or ``"microseconds"`` when ``nonce`` reads as the
    current time in that unit (within a factor of two), else None: a nonce must count
    nanoseconds (rule R13), and a client that sends another unit is told which."""
    if nonce <= 0 or now_ns <= 0:
        return None
    for unit, factor in _NONCE_UNITS:
        if now_ns // 2 <= nonce * factor <= now_ns * 2:
            return unit
    return None


def wrong_unit(nonce: int, now_ns: int) -> str | None:
    """What to tell a caller whose nonce is in another unit than nanoseconds, or None."""
    unit = nonce_unit(nonce, now_ns)
    return None if unit is None else f"Nonce must be nanoseconds since the Unix epoch; this one is in {unit}"


def _fail(
    reason: str, kind: type[NotVerifiedException] = NotVerifiedException, rule: str | None = None
) -> NotVerifiedException:
    return kind(f"Not Verified with error: {reason}", rule=rule)


async def verify_legacy(
    synapse: Synapse,
    axon_hotkey: str,
    store: NonceStore,
    policy: VerifyPolicy,
    crypto: str = "sr25519",
    *,
    bounded: bool = False,
) -> None:
    """Check signature and nonce of a header-built synapse; store the nonce on success.

    Raises :class:`NotVerifiedException` (401) with the reason,
    :class:`~axon_grpc.errors.SynapseParsingError` (400) for a caller field past its
    bound, :class:`~axon_grpc.errors.ServiceUnavailable` (503) when the store is full.
    ``bounded``: the caller's fields were read by
    :meth:`~axon_grpc.auth.credentials.Credentials.read`, which checked the same bounds
    (and more), so they are not checked twice.
    """
    d = synapse.dendrite
    if d is not None and not bounded:
        check_caller_fields(hotkey=d.hotkey, uuid=d.uuid, nonce=d.nonce, version=d.version)
    if d is None or not d.hotkey:
        raise _fail(MISSING_HOTKEY, rule=RULE_REQUIRED)
    if d.nonce is None:
        raise _fail("Missing Nonce", rule=RULE_REQUIRED)
    if not d.uuid:
        raise _fail("Missing Uuid", rule=RULE_REQUIRED)
    if not d.signature:
        raise _fail("Missing Signature", rule=RULE_REQUIRED)
    if not synapse.computed_body_hash:
        raise _fail("Missing Body Hash", rule=RULE_REQUIRED)
    if crypto not in SUPPORTED_CRYPTO:
        raise _fail(f"Unsupported crypto; use one of {', '.join(SUPPORTED_CRYPTO)}", rule=RULE_KEY_TYPE)
    version = d.version
    legacy = version is not None and version < V_7_2_0
    if legacy and not policy.allow_legacy_versions:
        raise _fail("Dendrite version predates 7.2.0 and is refused by this axon", rule=RULE_NAME_VERSION)

    now = time.time_ns()
    unit = None if legacy else wrong_unit(d.nonce, now)  # before 7.2.0 nonces count from boot
    if unit is not None:
        raise _fail(unit, NonceRefused, RULE_NONCE)
    if d.nonce - now > policy.max_future_s * 1e9:
        raise _fail("Nonce is too far in the future", NonceRefused, RULE_NONCE)
    try:
        signature = parse_signature(d.signature)
    except ValueError as e:
        raise _fail(f"Malformed signature: {e}", rule=RULE_SIGNATURE_ENCODING) from None
    message = request_message(synapse, axon_hotkey).encode()
    try:
        valid = verify_signature(d.hotkey, message, signature, crypto)
    except InvalidAddress as e:
        raise _fail(f"Invalid hotkey: {e}", rule=RULE_SS58) from None
    if not valid:
        raise _fail("Signature mismatch", rule=RULE_SIGNATURE)

    oldest_allowed: int | None = None
    allowed_s = 0.0
    if not legacy:
        timeout = min(max(synapse.timeout or 0.0, 0.0), policy.max_timeout_s)
        allowed_s = policy.base_window_s + timeout
        oldest_allowed = now - int(allowed_s * 1e9)
    verdict = await store.check_and_store(f"{d.hotkey}:{d.uuid}", d.nonce, oldest_allowed)
    if verdict is NonceVerdict.STALE:
        age = (now - d.nonce) / 1e9
        raise _fail(
            f"Nonce is too old: acceptable delta is {allowed_s:.2f} seconds but request was {age:.2f} seconds old",
            NonceRefused,
            RULE_NONCE,
        )
    if verdict is NonceVerdict.FULL:
        raise ServiceUnavailable("nonce store full")
    if verdict is not NonceVerdict.ACCEPTED:
        # A replay, or a nonce below this key's replay window (the legacy server's wording).
        raise _fail("Nonce is too old, a newer one was last processed", NonceRefused, RULE_REPLAY)
