"""The axon's side of ``axon-session/1`` (docs/SESSIONS.md, rules R24-R27 of docs/SPEC.md).

:meth:`Sessions.open` answers a ``SessionOpen`` (the handshake: cheap refusals first, then
the caller's signature, the nonce, the table's bounds, and only then the axon's own key
exchange and signature). :meth:`Sessions.find` and :meth:`Sessions.authenticate` check a
session call in two steps around reading its body: the session and the counter first
(nothing stored), then the MAC over the body's hash, and only then is the counter
accepted. No refusal of a session call is signed (:class:`SessionRefused`), so a flood of
forged MACs costs the axon a table lookup and an HMAC each.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any, Awaitable, Callable

from axon_grpc._aio import within
from axon_grpc._types import Signer
from axon_grpc.auth import session_wire as wire
from axon_grpc.auth.keys import SUPPORTED_CRYPTO, InvalidAddress, parse_signature, verify_signature
from axon_grpc.auth.legacy import MAX_HOTKEY_CHARS, grpc_body_hash, wrong_unit
from axon_grpc.auth.nonces import NonceStore, NonceVerdict
from axon_grpc.auth.session_table import OpenRate, Session, SessionPolicy, SessionTable, TableFull
from axon_grpc.errors import (
    NotVerifiedException,
    Reason,
    RequestTimeout,
    RequestTooLarge,
    ServiceUnavailable,
    SynapseParsingError,
)
from axon_grpc.schema.contract import RULE_SESSION_CALL, RULE_SESSION_OPEN, RULE_SESSIONS

__all__ = ["SessionPolicy", "SessionRefused", "Sessions"]

#: How a refusal tells the client its session is gone and a new one will do (R27).
REOPEN = "; open a new one"
#: Longest an open's message may take to arrive once the rate allowed it.
OPEN_READ_S = 5.0
#: The nonce store's key of a caller's opens (no legacy ``{hotkey}:{uuid}`` key starts so).
OPEN_KEY_PREFIX = "session-open:"


class SessionRefused(NotVerifiedException):
    """401 for a session call (R27); unsigned, so a forgery costs the axon no signing."""

    signed = False


class SessionReplay(SessionRefused):
    """A counter already accepted, or below the window."""

    reason = Reason.NONCE


class SessionsFull(RequestTooLarge):
    """413 for an open past the table's bounds (per address, in total)."""

    signed = False


class OpenRefused(NotVerifiedException):
    """401 for an open (R25); the ``result`` label of ``axon_session_opens_total``."""

    signed = False

    def __init__(self, message: str, result: str) -> None:
        super().__init__(f"Not Verified with error: {message}", rule=RULE_SESSION_OPEN)
        self.result = result


def _refuse(message: str, kind: type[SessionRefused] = SessionRefused, rule: str = RULE_SESSION_CALL) -> SessionRefused:
    return kind(f"Not Verified with error: {message}", rule=rule)


class Sessions:
    """Opens and checks sessions for one axon worker.

    ``hotkey``: the axon's signing hotkey (read when first needed); ``store``: the nonce store
    of the opens (the axon's legacy one, Redis when the workers share one); ``metrics``: a
    :class:`~axon_grpc.metrics.sessions.SessionMetrics` or None.
    """

    def __init__(
        self,
        hotkey: Callable[[], Signer],
        store: Callable[[], NonceStore],
        policy: SessionPolicy | None = None,
        *,
        metrics: Any = None,
    ) -> None:
        self.policy = policy or SessionPolicy()
        self._hotkey = hotkey
        self._store = store
        self.table = SessionTable(self.policy)
        self.rate = OpenRate(self.policy)
        self.metrics = metrics
        #: Opens whose message is being awaited, by address (an entry leaves at 0: bounded by the
        #: calls in flight).
        self.reading: dict[str, int] = {}

    # -- the open (R25, R26) ----------------------------------------------------------------------
    async def open(self, read: Callable[[], Awaitable[bytes]], address: str | None) -> bytes:
        """The encoded ``SessionAccept`` for the encoded ``SessionOpen`` that ``read`` returns (it is
        read only once the open rate allows one from ``address``, within ``OPEN_READ_S``); raises
        an :class:`~axon_grpc.errors.AxonError` (its status and message) otherwise."""
        try:
            accept = await self._open(read, address or "")
        except OpenRefused as e:
            self._count(e.result)
            raise
        except ServiceUnavailable:
            self._count("rate")
            raise
        except SessionsFull:
            self._count("limit")
            raise
        except (SynapseParsingError, RequestTooLarge, RequestTimeout):
            self._count("invalid")
            raise
        self._count("accepted")
        return accept

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.opened(result, self.table)

    async def _open(self, read: Callable[[], Awaitable[bytes]], address: str) -> bytes:
        policy = self.policy
        reading = self.reading.get(address, 0)
        if reading >= policy.opens_reading_per_address or not self.rate.take(address):
            raise ServiceUnavailable("Too many session opens; retry later", rule=RULE_SESSION_OPEN)
        self.reading[address] = reading + 1
        try:
            data = await within(read(), OPEN_READ_S)
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestTimeout("Request timeout: the session open did not arrive in time") from None
        finally:
            left = self.reading.pop(address) - 1
            if left:
                self.reading[address] = left
        if len(data) > wire.MAX_MESSAGE_BYTES:
            raise RequestTooLarge(f"A session open has at most {wire.MAX_MESSAGE_BYTES} bytes", rule=RULE_SESSION_OPEN)
        try:
            request = wire.SessionOpen.decode(data)
        except wire.WireFormatError as e:
            raise SynapseParsingError(f"Improperly formatted session open: {e}", rule=RULE_SESSION_OPEN) from None
        if len(request.dendrite_hotkey) > MAX_HOTKEY_CHARS or len(request.ephemeral_key) != wire.KEY_BYTES:
            raise SynapseParsingError(
                "Improperly formatted session open: a hotkey of at most 50 characters and a 32-byte "
                "X25519 key are required",
                rule=RULE_SESSION_OPEN,
            )
        if request.version != wire.VERSION:
            raise OpenRefused(f"Unsupported session version; this axon speaks {wire.VERSION}", "version")
        crypto = request.crypto or "sr25519"
        if crypto not in SUPPORTED_CRYPTO:
            raise OpenRefused(f"Unsupported crypto; use one of {', '.join(SUPPORTED_CRYPTO)}", "invalid")
        signer = self._hotkey()
        axon_hotkey = signer.ss58_address
        if request.axon_hotkey != axon_hotkey:
            raise OpenRefused("Session open is for another axon", "receiver")
        now_ns = time.time_ns()
        oldest = now_ns - int(policy.open_max_age_s * 1e9)
        unit = wrong_unit(request.nonce, now_ns)
        if unit is not None:
            raise OpenRefused(unit, "nonce")
        if request.nonce - now_ns > policy.open_max_future_s * 1e9:
            raise OpenRefused("Session open nonce is too far in the future", "nonce")
        if request.nonce < oldest:
            raise OpenRefused("Session open nonce is too old", "nonce")
        try:
            signature = parse_signature(request.signature)
        except ValueError as e:
            raise OpenRefused(f"Malformed signature: {e}", "signature") from None
        try:
            valid = verify_signature(request.dendrite_hotkey, request.transcript().encode(), signature, crypto)
        except InvalidAddress as e:
            raise OpenRefused(f"Invalid hotkey: {e}", "signature") from None
        if not valid:
            raise OpenRefused("Session open signature mismatch", "signature")
        verdict = await self._store().check_and_store(OPEN_KEY_PREFIX + request.dendrite_hotkey, request.nonce, oldest)
        if verdict is NonceVerdict.FULL:
            raise ServiceUnavailable("nonce store full")
        if verdict is NonceVerdict.STALE:
            raise OpenRefused("Session open nonce is too old", "nonce")
        if verdict is not NonceVerdict.ACCEPTED:
            raise OpenRefused("Session open nonce already used", "nonce")
        return self._accept(request, signer, address)

    def _accept(self, request: wire.SessionOpen, signer: Signer, address: str) -> bytes:
        policy = self.policy
        private, public = wire.ephemeral_keypair()
        accept = wire.SessionAccept(
            version=wire.VERSION,
            dendrite_hotkey=request.dendrite_hotkey,
            axon_hotkey=signer.ss58_address,
            dendrite_ephemeral_key=request.ephemeral_key,
            axon_ephemeral_key=public,
            nonce=request.nonce,
            session_id=self.table.new_id(),
            lifetime_s=policy.lifetime_s,
            max_calls=policy.max_calls,
            window=policy.window,
        )
        try:
            key = wire.session_key(private, request.ephemeral_key, request, accept)
        except ValueError as e:
            raise OpenRefused(f"Invalid ephemeral key: {e}", "invalid") from None
        try:
            self.table.add(request.dendrite_hotkey, key, address, accept.session_id)
        except TableFull as e:
            raise SessionsFull(str(e), rule=RULE_SESSION_OPEN) from None
        accept.signature = "0x" + bytes(signer.sign(accept.transcript())).hex()
        return accept.encode()

    # -- calls (R27) -------------------------------------------------------------------------------
    def hotkey_of(self, session_id: str | None) -> str | None:
        """The hotkey of a live session (unverified for this call: for the overload stage only)."""
        session = self.table.get(session_id) if session_id else None
        return session.hotkey if session is not None else None

    def find(self, session_id: str | None, counter: int | None, mac: str | None) -> Session:
        """The live session a call names, if its counter may still be accepted (nothing stored)."""
        if not session_id:
            raise _refuse("Missing session id")
        if counter is None:
            raise _refuse("Missing session counter")
        if not mac:
            raise _refuse("Missing session MAC")
        table = self.table
        session = table.get(session_id)
        if session is None:
            if not session_id.startswith(table.worker + "-"):
                raise _refuse("Session of another worker" + REOPEN)
            raise _refuse("Unknown session" + REOPEN)
        if time.monotonic() >= session.expires:
            table.drop(session, "expired")
            self._gone()
            raise _refuse("Session expired" + REOPEN)
        if counter < 1:
            raise _refuse("Session counter must be at least 1")
        if counter > session.max_calls:
            raise _refuse("Session call limit reached" + REOPEN)
        self._check_counter(session.counters.problem(counter))
        return session

    def _gone(self) -> None:
        if self.metrics is not None:
            self.metrics.live(self.table)

    @staticmethod
    def _check_counter(problem: str | None) -> None:
        if problem == "used":
            raise _refuse("Session counter already used", SessionReplay)
        if problem == "below":
            raise _refuse("Session counter is below the window", SessionReplay)

    def authenticate(
        self, session: Session, counter: int, mac: str, method: str, body: bytes, timeout: str | None
    ) -> str:
        """Check the call's MAC over ``method``, the hash of ``body`` and ``timeout``, then accept its
        counter; returns the body hash (R7's). Raises :class:`SessionRefused`."""
        body_hash = grpc_body_hash(method, body)
        expected = wire.call_mac(session.key, session.id, counter, method, body_hash, timeout)
        if not (mac.isascii() and hmac.compare_digest(expected, mac)):  # compare_digest takes ASCII only
            raise _refuse("Session MAC mismatch")
        self._check_counter(session.counters.accept(counter))  # again: a call with it may have passed meanwhile
        session.last_used = time.monotonic()
        return body_hash


def not_served(transport_ok: bool) -> SessionRefused:
    """The refusal of a session call where none is served: sessions off, or not over gRPC (R24)."""
    where = "by this axon" if transport_ok else "over this protocol; use gRPC"
    return _refuse(f"Sessions are not served {where}", rule=RULE_SESSIONS)
