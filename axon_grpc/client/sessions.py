"""The caller's side of ``axon-session/1`` (docs/SESSIONS.md): open a session, then stamp calls.

For any client, the Dendrite's included, and for load generators::

    session = await open_session(channel, keypair, axon_hotkey)      # one signed handshake
    metadata = session.metadata("/axon.v1.Axon/Dummy", body, 12.0)   # per call: id, counter, MAC
    await channel.unary_unary("/axon.v1.Axon/Dummy")(body, metadata=metadata, timeout=12.0)

:meth:`ClientSession.metadata` is thread-safe and gives each call its own counter.
A call refused with a message holding ``open a new one`` (:func:`needs_reopen`) wants a new
session; :meth:`ClientSession.fresh` says when to renew one before it ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import Any

import grpc

from axon_grpc.auth import session_wire as wire
from axon_grpc.auth.keys import InvalidAddress, parse_signature, verify_signature
from axon_grpc.auth.legacy import grpc_body_hash

__all__ = [
    "SESSION_MODES",
    "ClientSession",
    "SessionKeeper",
    "SessionOpenFailed",
    "accept_session",
    "needs_reopen",
    "open_request",
    "open_session",
]

#: A session is renewed this long before it ends (or at a tenth of its life, if shorter).
REKEY_BEFORE_S = 60.0
#: The words of the refusals after which a new session will do (R27).
REOPEN_WORDS = "open a new one"


class SessionOpenFailed(Exception):
    """An open was refused, failed, or its accept did not verify; ``status`` is HTTP-style."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientSession:
    """A session opened with one axon: its id, key and terms, and the next counter."""

    def __init__(
        self, session_id: str, key: bytes, hotkey: str, axon_hotkey: str, lifetime_s: float, max_calls: int
    ) -> None:
        self.id = session_id
        self.key = key
        #: The caller's hotkey (what the axon's hooks see) and the axon's.
        self.hotkey = hotkey
        self.axon_hotkey = axon_hotkey
        self.opened = time.monotonic()
        self.expires = self.opened + lifetime_s
        self.max_calls = max_calls
        self._counter = 0
        self._lock = threading.Lock()

    def next_counter(self) -> int:
        """The next call's counter (1 for the first), strictly increasing across threads."""
        with self._lock:
            self._counter += 1
            return self._counter

    @property
    def used(self) -> int:
        """Counters taken so far."""
        return self._counter

    def fresh(self, now: float | None = None) -> bool:
        """Whether to keep using it: not within its renewal margin of the end, counters left."""
        now = time.monotonic() if now is None else now
        margin = min(REKEY_BEFORE_S, (self.expires - self.opened) / 10)
        return now < self.expires - margin and self._counter < self.max_calls

    def stamp(self, method: str, body: bytes, timeout: float | str | None) -> tuple[int, list[tuple[str, str]]]:
        """The counter and metadata of the next call of ``method`` with ``body`` (the message bytes
        as sent) and ``timeout`` (seconds, as the ``timeout`` key will carry it; None: not sent)."""
        counter = self.next_counter()
        sent = None if timeout is None else str(timeout)
        mac = wire.call_mac(self.key, self.id, counter, method, grpc_body_hash(method, body), sent)
        metadata = [(wire.SESSION_KEY, self.id), (wire.COUNTER_KEY, str(counter)), (wire.MAC_KEY, mac)]
        if sent is not None:
            metadata.append(("timeout", sent))
        return counter, metadata

    def metadata(self, method: str, body: bytes, timeout: float | str | None) -> tuple[tuple[str, str], ...]:
        """:meth:`stamp`'s metadata alone: what a load generator sends with each call."""
        return tuple(self.stamp(method, body, timeout)[1])


def open_request(keypair: Any, axon_hotkey: str, crypto: str | None = None) -> tuple[wire.SessionOpen, bytes]:
    """A signed ``SessionOpen`` to ``axon_hotkey`` and the ephemeral private key to keep for the accept."""
    private, public = wire.ephemeral_keypair()
    if crypto is None:
        crypto = getattr(keypair, "crypto_type", "sr25519")
        if isinstance(crypto, int):  # Bittensor keypairs number their crypto types
            crypto = "ed25519" if crypto == 0 else "sr25519"
    request = wire.SessionOpen(
        version=wire.VERSION,
        crypto=str(crypto),
        dendrite_hotkey=keypair.ss58_address,
        axon_hotkey=axon_hotkey,
        ephemeral_key=public,
        nonce=time.time_ns(),
    )
    request.signature = "0x" + bytes(keypair.sign(request.transcript())).hex()
    return request, private


def accept_session(request: wire.SessionOpen, private: bytes, answer: bytes) -> ClientSession:
    """The session an axon's answer to ``request`` opens, once its signature (by the axon's hotkey
    the request named, sr25519 or ed25519) and every echoed field check; raises
    :class:`SessionOpenFailed` (422) otherwise (R26)."""
    try:
        accept = wire.SessionAccept.decode(answer)
    except wire.WireFormatError as e:
        raise SessionOpenFailed(422, f"session accept not verified: {e}") from None
    problem = wire.echo_problem(request, accept)
    if problem is None and not wire.session_id_fits(accept.session_id):
        problem = "the session id is missing, too long or not printable ASCII"
    if problem is None and not (accept.lifetime_s > 0 and accept.max_calls > 0):
        problem = "the session has no lifetime or no calls"
    if problem is None:
        message = accept.transcript().encode()
        try:
            raw = parse_signature(accept.signature)
            valid = any(verify_signature(request.axon_hotkey, message, raw, c) for c in ("sr25519", "ed25519"))
        except (ValueError, InvalidAddress):
            valid = False
        problem = None if valid else "the axon's signature does not verify"
    if problem is None:
        try:
            key = wire.session_key(private, accept.axon_ephemeral_key, request, accept)
        except ValueError as e:
            problem = str(e)
    if problem is not None:
        raise SessionOpenFailed(422, f"session accept not verified: {problem}")
    return ClientSession(
        accept.session_id, key, request.dendrite_hotkey, request.axon_hotkey, accept.lifetime_s, accept.max_calls
    )


async def open_session(
    channel: grpc.aio.Channel, keypair: Any, axon_hotkey: str, *, crypto: str | None = None, timeout: float = 10.0
) -> ClientSession:
    """Open a session with the axon at the other end of ``channel`` whose hotkey is ``axon_hotkey``;
    raises :class:`SessionOpenFailed` with the axon's status and message when it refuses."""
    request, private = open_request(keypair, axon_hotkey, crypto)
    method = channel.unary_unary(wire.OPEN_METHOD)
    try:
        answer = await method(request.encode(), timeout=timeout)
    except grpc.aio.AioRpcError as e:
        from axon_grpc.transports.grpc_codec import http_status_for

        raise SessionOpenFailed(http_status_for(e.code()), e.details() or e.code().name) from None
    return accept_session(request, private, answer)


def needs_reopen(status: int, message: str | None) -> bool:
    """Whether a refusal says the session is gone and a new one will do (unknown, expired, another
    worker's, out of calls)."""
    return status == 401 and REOPEN_WORDS in (message or "")


def announced(trailers: Any) -> bool:
    """Whether answer ``trailers`` announce ``axon-session/1`` (R24)."""
    for key, value in trailers or ():
        if key == wire.ANNOUNCE_TRAILER:
            return wire.VERSION in str(value).split(",")
    return False


#: How a Dendrite uses sessions (``Dendrite(sessions=...)``).
SESSION_MODES = (
    "auto",  #: once an axon announced them: a session per axon, signed calls where none can be opened
    "off",  #: every call signed
    "required",  #: a session per axon before the first call; a call whose session cannot be opened fails
)
#: After a failed open, ``auto`` signs its calls to that axon this long before trying again.
RETRY_OPEN_S = 60.0


class _AxonState:
    __slots__ = ("announced", "lock", "retry_after", "session")

    def __init__(self) -> None:
        self.announced = False
        self.session: ClientSession | None = None
        self.retry_after = 0.0
        self.lock = asyncio.Lock()


class SessionKeeper:
    """A Dendrite's sessions: one per axon (address and hotkey) and event loop, opened, renewed
    and dropped as ``mode`` says."""

    def __init__(self, mode: str, keypair: Any, crypto: str) -> None:
        if mode not in SESSION_MODES:
            raise ValueError(f"sessions must be one of {', '.join(SESSION_MODES)}, not {mode!r}")
        self.mode = mode
        self.keypair = keypair
        self.crypto = crypto
        self._states: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], _AxonState]] = weakref.WeakKeyDictionary()

    def _state(self, address: str, axon_hotkey: str) -> _AxonState:
        states = self._states.setdefault(asyncio.get_running_loop(), {})
        state = states.get((address, axon_hotkey))
        if state is None:
            state = states[(address, axon_hotkey)] = _AxonState()
        return state

    def learn(self, address: str, axon_hotkey: str, trailers: Any) -> None:
        """Note whether the axon's answer announced sessions."""
        if self.mode == "auto":
            self._state(address, axon_hotkey).announced = announced(trailers)

    def forget(self, address: str, axon_hotkey: str, session: ClientSession, back_off: bool = False) -> None:
        """Drop ``session`` (the axon said it is gone): the next call opens another; with
        ``back_off``, ``auto`` signs its calls to that axon for ``RETRY_OPEN_S`` first."""
        state = self._state(address, axon_hotkey)
        if state.session is session:
            state.session = None
        if back_off:
            state.retry_after = time.monotonic() + RETRY_OPEN_S

    async def session(
        self, address: str, axon_hotkey: str, channel: grpc.aio.Channel, timeout: float
    ) -> ClientSession | None:
        """The session to call with, opened or renewed when needed; None: sign the call. Raises
        :class:`SessionOpenFailed` when ``required`` and none can be opened."""
        if self.mode == "off":
            return None
        state = self._state(address, axon_hotkey)
        if self.mode == "auto" and not state.announced:
            return None
        session = state.session
        if session is not None and session.fresh():
            return session
        if self.mode == "auto" and time.monotonic() < state.retry_after:
            return None
        # One open at a time per axon: the others wait for it, within their own timeout.
        started = time.monotonic()
        try:
            await asyncio.wait_for(state.lock.acquire(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            if self.mode == "required":
                raise SessionOpenFailed(408, "no session opened within the call's timeout") from None
            return None
        try:
            session = state.session
            if session is not None and session.fresh():
                return session
            if self.mode == "auto" and time.monotonic() < state.retry_after:
                return None  # the open waited for failed: this call is signed too
            timeout = max(timeout - (time.monotonic() - started), 0.001)
            try:
                session = await open_session(channel, self.keypair, axon_hotkey, crypto=self.crypto, timeout=timeout)
            except SessionOpenFailed:
                state.session = None
                state.retry_after = time.monotonic() + RETRY_OPEN_S
                if self.mode == "required":
                    raise
                return None
            state.session = session
            return session
        finally:
            state.lock.release()
