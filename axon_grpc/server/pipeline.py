"""The transport-neutral request pipeline: ``Pipeline.handle(Call) -> Outcome``.

Every request passes the same stages, in this order, whichever transport carried it:

1. **Route**: an unknown synapse name is 404.
2. **Credentials**: the auth headers (legacy ``bt_header_*``, btauth/1 or an
   ``axon-session/1`` session's, decided here once) are read in one pass; a malformed or
   oversized value is 400, and so is a ``name`` header naming another synapse than the one
   called.
3. **Overload**: when every slot is busy and the queue is full, a caller whose last
   verified priority could not displace a queued request is refused 503 before any
   signature work (callers never seen count as the lowest priority).
4. **Signature and nonce**: the signature is verified and the nonce recorded (401); a
   session call's session and counter are checked, then its MAC once the body is read.
5. **Body**: read (413 past the limit), checked against the signed body hash and decoded
   by the call's codec (:class:`~axon_grpc.server.call.Codec`: the transport's wire
   format, so no stage here names a transport), validated once into the synapse (400).
   Base fields come from the verified credentials and the axon's own state; user fields
   from the body only.
6. **Hooks** on that synapse: ``blacklist_fn`` (403), ``verify_fn`` (401),
   ``priority_fn``.
7. **Admission and forward**: a slot in priority order (503 when shed, 408 when the
   deadline passes while queued), then the forward within the call's time limit:
   the earlier of the transport's deadline and ``synapse.timeout`` (408).
8. **Answer**: the axon's own terminal info (errors signed, overload refusals not);
   one log line, and one report to the ``observer`` (:mod:`~axon_grpc.metrics.observer`):
   status, refusal reason, duration (a stream's when it ends).

``handle`` never raises for a request's fault; unexpected errors become
``500 Internal Server Error #{id}`` with the traceback logged under that id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuid_lib
from collections import OrderedDict
from typing import Any, Callable, Mapping

from pydantic import ValidationError

from axon_grpc._aio import within
from axon_grpc.auth.credentials import BTAUTH, LEGACY, NAME, SESSION, TIMEOUT, Credentials
from axon_grpc.auth.verifier import Verifier
from axon_grpc.errors import (
    AxonError,
    BlacklistedException,
    BodyHashMismatch,
    Reason,
    RequestTimeout,
    Shed,
    SynapseParsingError,
    VerifyRefused,
    reason_of,
)
from axon_grpc.metrics.observer import NO_SCHEME, NULL_OBSERVER, UNKNOWN_SYNAPSE, Observer
from axon_grpc.schema.contract import RULE_METHOD, RULE_NAME_VERSION
from axon_grpc.server.admission import OVERLOADED, AdmissionQueue
from axon_grpc.server.call import Call, Codec, Outcome
from axon_grpc.server.endpoints import Endpoint, is_async, unknown_synapse
from axon_grpc.server.forwarding import Forwarder, Limit
from axon_grpc.server.reporting import describe, log_call
from axon_grpc.server.streams import ended_early, open_stream
from axon_grpc.server.terminal import AxonTerminal, forward_status
from axon_grpc.synapse import Synapse, TerminalInfo, legacy_body_hash, signed_fields

logger = logging.getLogger("axon_grpc")

#: Longest a request body may take to arrive once the checks that need none have passed.
MAX_BODY_READ_S = 30.0
#: The 408 of a body that did not arrive in time.
BODY_TIMEOUT = "Request timeout: the request body did not arrive in time"
#: How many callers' last priorities are remembered for stage 3.
REMEMBERED_PRIORITIES = 4096

_NO_PRIORITY = float("-inf")
#: The legacy ``name`` header (SDK dendrites send it) naming another synapse than the route:
#: the legacy signed message does not cover the route, so this is what binds them.
WRONG_NAME = "Improperly formatted request. The name header does not match the synapse called"


#: The 400 of a legacy HTTP request whose body is not the signed one (the SDK 10.5 axon
#: answers 500; neither hash is echoed: the caller has its own).
LEGACY_HASH_MISMATCH = "Hash mismatch: computed_body_hash is not the hash of this body's required_hash_fields"


def _parse_error_detail(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "value"
    return f"{location}: {first.get('msg', 'invalid')}"


def with_rule(message: str, error: BaseException, codec: Codec | None) -> str:
    """``message``, followed by `` (rule Rn)`` when ``error`` breaks a rule of docs/SPEC.md
    and the call's wire format names rules (gRPC); the legacy HTTP answer keeps the SDK's words."""
    rule = getattr(error, "rule", None)
    return f"{message} (rule {rule})" if rule is not None and codec is not None and codec.names_rules else message


class Pipeline:
    """The stages of the module docstring over the axon's collaborators."""

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint],
        verifier: Verifier,
        admission: AdmissionQueue,
        forwarder: Forwarder,
        terminal: AxonTerminal,
        *,
        observer: Observer = NULL_OBSERVER,
        extra_verify: Callable[[Synapse], Any] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.verifier = verifier
        self.admission = admission
        self.forwarder = forwarder
        self.terminal = terminal
        self._priorities: OrderedDict[str, float] = OrderedDict()
        #: Runs after the signature check and before the endpoint's ``verify_fn``
        #: (an Axon subclass's ``default_verify``), or None; and whether it is a coroutine function.
        self.extra_verify = extra_verify
        self.extra_verify_async = extra_verify is not None and is_async(extra_verify)
        #: Told of every answered call (:class:`~axon_grpc.metrics.observer.Observer`).
        self.observer: Observer = observer

    async def handle(self, call: Call) -> Outcome:
        """Answer one call (stages 1-8); never raises for the request's fault."""
        start = time.time()
        endpoint = self.endpoints.get(call.name)
        if endpoint is None:
            outcome = self.unknown(call.name, start, call.codec)
            self.observer.finished(
                UNKNOWN_SYNAPSE, call.transport, NO_SCHEME, outcome.status, outcome.reason, time.time() - start, None
            )
            return outcome
        credentials: Credentials | None = None
        synapse: Synapse | None = None
        request_body: Any = None
        try:
            credentials = Credentials.read(call.headers)
            if call.headers.get(NAME, call.name) != call.name:
                raise SynapseParsingError(WRONG_NAME, rule=RULE_NAME_VERSION)
            if self.admission.saturated:
                self._refuse_early(credentials)
            dendrite = credentials.dendrite(call.peer_ip, call.peer_port)
            body = await self._authenticate(call, credentials, endpoint, dendrite)
            synapse, request_body = self._build(endpoint, call, credentials, body, dendrite)
            priority = await self._hooks(endpoint, synapse)
            limit = self._limit(call.deadline, call.deadline_enforced, synapse)
            if endpoint.streaming:
                outcome = await open_stream(
                    self, call.codec, endpoint, synapse, priority, limit, start, request_body, credentials.scheme
                )
                if outcome.stream is not None:
                    return outcome  # reported when the stream ends
            else:
                own = synapse.__dict__["axon"]
                result = await self.forwarder.run(endpoint, synapse, priority, limit)
                outcome = self.success(call.codec, endpoint, result, start, request_body, own)
                if self.terminal.wants_signed_answer(call.headers):
                    self.terminal.sign_answer(
                        outcome, call.codec, credentials.nonce, credentials.hotkey, credentials.uuid
                    )
        except Exception as e:
            failed = synapse if synapse is not None else self.stand_in(endpoint, credentials, call)
            outcome = self.failure(call.codec, endpoint, failed, e, start, request_body)
        except asyncio.CancelledError:  # the caller's deadline, or the caller left: report, then go on
            try:
                status, reason = ended_early(call.deadline)
                log_call(call.transport, endpoint.name, synapse or endpoint.header_synapse(), status, start)
                self._report(endpoint, call, credentials, synapse, status, reason, start)
            except Exception:  # never in place of the cancellation
                logger.exception("reporting a cancelled call of %s failed", endpoint.name)
            raise
        self._report(endpoint, call, credentials, synapse, outcome.status, outcome.reason, start)
        return outcome

    def _report(
        self,
        endpoint: Endpoint,
        call: Call,
        credentials: Credentials | None,
        synapse: Synapse | None,
        status: int,
        reason: str | None,
        start: float,
    ) -> None:
        verified = synapse.dendrite if synapse is not None else None
        self.observer.finished(
            endpoint.name,
            call.transport,
            credentials.scheme if credentials is not None else NO_SCHEME,
            status,
            reason,
            time.time() - start,
            verified.hotkey if verified is not None else None,
        )

    # -- stages 2-4 --------------------------------------------------------------------------
    def _refuse_early(self, credentials: Credentials) -> None:
        claimed = self._priorities.get(self.verifier.claimed_hotkey(credentials) or "", _NO_PRIORITY)
        if not self.admission.would_admit(claimed):
            self.admission.stats.shed += 1
            raise Shed(OVERLOADED)

    async def _authenticate(
        self, call: Call, credentials: Credentials, endpoint: Endpoint, dendrite: TerminalInfo
    ) -> bytes:
        """Verify the signature (and store the nonce); returns the body bytes."""
        timeout = credentials.timeout if credentials.timeout is not None else endpoint.default_timeout
        if credentials.scheme == BTAUTH:
            self.verifier.check_btauth_headers(call.headers)  # what needs no body, before holding it
            body = await self._body(call, timeout)
            await self.verifier.verify_btauth(call.headers, body, call.method, call.path)
            return body
        if credentials.scheme == SESSION:
            body = await self.verifier.verify_session(
                credentials, call.path, call.headers.get(TIMEOUT), call.transport, lambda: self._body(call, timeout)
            )
            dendrite.__dict__["hotkey"] = credentials.hotkey  # the session's, verified
            return body
        await self.verifier.verify_legacy(signed_fields(timeout, credentials.body_hash, dendrite), credentials.crypto)
        return await self._body(call, timeout)

    @staticmethod
    async def _body(call: Call, timeout: float | None) -> bytes:
        """The body, read within the call's time limit and at most ``MAX_BODY_READ_S``: a
        caller who stops sending it (any key will do, or none for btauth) holds what it sent
        only that long (408)."""
        if call.body is not None:
            return call.body
        if call.read_body is None:
            return b""
        seconds = min(MAX_BODY_READ_S, timeout if timeout is not None else MAX_BODY_READ_S)
        if call.deadline is not None:
            seconds = min(seconds, call.deadline - time.monotonic())
        try:
            return await within(call.read_body(), max(seconds, 0.0))  # a timer, not a task per read
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestTimeout(BODY_TIMEOUT) from None

    # -- stage 5 -----------------------------------------------------------------------------
    def _build(
        self, endpoint: Endpoint, call: Call, credentials: Credentials, body: bytes, dendrite: TerminalInfo
    ) -> tuple[Synapse, Any]:
        """The synapse from the signed body, checked against the signed hash by the call's
        codec's rule; and what answers may echo of the body."""
        legacy = credentials.scheme == LEGACY  # btauth/1 and session MACs covered the bytes already
        codec = call.codec
        checked = codec.check_message_hash(call.path, body, credentials.body_hash) if legacy else True
        data, echo = codec.decode(endpoint, body)
        if credentials.timeout is not None:
            data["timeout"] = credentials.timeout
        data["computed_body_hash"] = credentials.body_hash
        data["dendrite"] = dendrite
        data["axon"] = self.terminal.info(100, None)
        synapse = self.validate(endpoint, data)
        if not checked:  # the format hashes the fields, not the bytes
            self.check_legacy_hash(endpoint, synapse, credentials.body_hash)
        return synapse, echo

    @staticmethod
    def validate(endpoint: Endpoint, data: Mapping[str, Any]) -> Synapse:
        """The one validation of a request's synapse (400 naming the first bad field)."""
        try:
            return endpoint.synapse_class.model_validate(data)
        except ValidationError as e:
            raise SynapseParsingError(
                f"Improperly formatted request. Could not parse body into synapse of type {endpoint.name}: "
                f"{_parse_error_detail(e)}"
            ) from None

    @staticmethod
    def check_legacy_hash(endpoint: Endpoint, synapse: Synapse, claimed: str | None) -> None:
        """The legacy field hash of a JSON-built synapse must be the signed one (400)."""
        if legacy_body_hash(synapse, endpoint.hash_fields) != claimed:
            raise BodyHashMismatch(LEGACY_HASH_MISMATCH)

    # -- stage 6: each hook on its own, for the seed's AxonMiddleware stage methods too --------
    async def _hooks(self, endpoint: Endpoint, synapse: Synapse) -> float:
        await self.blacklist(endpoint, synapse)
        await self.verify_hooks(endpoint, synapse)
        priority = await self.priority(endpoint, synapse)
        self._remember(synapse.dendrite.hotkey if synapse.dendrite is not None else None, priority)
        return priority

    @staticmethod
    async def blacklist(endpoint: Endpoint, synapse: Synapse) -> None:
        """Raise :class:`BlacklistedException` (403) when ``blacklist_fn`` refuses ``synapse``."""
        fn = endpoint.blacklist_fn
        if fn is None:
            return
        result = fn(synapse)
        if endpoint.blacklist_async:
            result = await result  # type: ignore[misc]
        blacklisted, reason = result if isinstance(result, tuple) else (bool(result), "")
        if blacklisted:
            raise BlacklistedException(f"Forbidden. Key is blacklisted: {reason}.")

    async def verify_hooks(self, endpoint: Endpoint, synapse: Synapse) -> None:
        """The miner's own checks after the signature: a replaced ``default_verify``, then ``verify_fn``.

        A refusal that is no :class:`AxonError` is 401 ``Not Verified #{id}``: its text
        (which may hold the miner's internals) stays in the log under that id.
        """
        checks = ((self.extra_verify, self.extra_verify_async), (endpoint.verify_fn, endpoint.verify_async))
        for fn, run_async in checks:
            if fn is None:
                continue
            try:
                result = fn(synapse)
                if run_async:
                    await result  # type: ignore[misc]
            except AxonError:
                raise
            except Exception as e:
                refusal_id = str(uuid_lib.uuid4())
                logger.info("verify of %s refused: error id %s", endpoint.name, refusal_id, exc_info=e)
                raise VerifyRefused(f"Not Verified #{refusal_id}") from e

    @staticmethod
    async def priority(endpoint: Endpoint, synapse: Synapse) -> float:
        """What ``priority_fn`` gives ``synapse`` (0.0 without one)."""
        fn = endpoint.priority_fn
        if fn is None:
            return 0.0
        value = fn(synapse)
        if endpoint.priority_async:
            value = await value  # type: ignore[misc]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"priority_fn for {endpoint.name} returned {type(value).__name__}, not a number")
        return float(value)

    def _remember(self, hotkey: str | None, priority: float) -> None:
        if hotkey is None:
            return
        remembered = self._priorities
        remembered[hotkey] = priority
        remembered.move_to_end(hotkey)
        if len(remembered) > REMEMBERED_PRIORITIES:
            remembered.popitem(last=False)

    # -- stage 7 -----------------------------------------------------------------------------
    @staticmethod
    def _limit(deadline: float | None, enforced: bool, synapse: Synapse) -> Limit:
        """The earlier of the transport's ``deadline`` and ``synapse.timeout``; timed unless the
        transport ``enforced`` it."""
        timeout = synapse.timeout
        own = None if timeout is None else time.monotonic() + timeout
        if deadline is None or (own is not None and own < deadline):
            return Limit(own, own is not None)
        return Limit(deadline, not enforced)

    async def forward(self, endpoint: Endpoint, synapse: Synapse, priority: float, codec: Codec) -> Synapse:
        """Stage 7 and the success stamp for a synapse already through stages 1-6 (the seed's
        ``AxonMiddleware.run``); ``codec``: the wire format it came by."""
        start, own = time.time(), synapse.__dict__.get("axon")
        result = await self.forwarder.run(endpoint, synapse, priority, self._limit(None, False, synapse))
        return self.success(codec, endpoint, result, start, None, own).synapse

    # -- stage 8 -----------------------------------------------------------------------------
    def success(
        self,
        codec: Codec,
        endpoint: Endpoint,
        result: Synapse,
        start: float,
        request_body: Any,
        own: TerminalInfo | None,
    ) -> Outcome:
        """200 (or the forward's own status), stamped in the request's own terminal info
        (``own``) when the forward kept it."""
        status, message = self.terminal.stamp(result, own, 200, "Success", time.time() - start)
        log_call(codec.transport, endpoint.name, result, status, start)
        if status == 200:
            return Outcome(200, message, result, endpoint, request_body=request_body)
        self.terminal.sign(result)  # a refusal of the forward's own: signed like every error
        return Outcome(status, message, result, endpoint, request_body=request_body, reason=Reason.FORWARD)

    def failure(
        self,
        codec: Codec,
        endpoint: Endpoint | None,
        synapse: Synapse,
        error: BaseException,
        start: float,
        request_body: Any,
    ) -> Outcome:
        status, message = describe(error, synapse.name)
        message = with_rule(message, error, codec)
        carried = getattr(error, "synapse", None)
        own = forward_status(carried.__dict__.get("axon")) if isinstance(carried, Synapse) else None
        if own is not None:  # a SynapseException about a synapse whose status the forward set
            status, message = own
        request_body = getattr(error, "echo", request_body)  # what the answer of a refused body names
        synapse.__dict__["axon"] = self.terminal.info(status, message, time.time() - start)
        if getattr(error, "signed", True):  # overload and not-JSON refusals unsigned, as legacy: the cheapest
            self.terminal.sign(synapse)
        log_call(codec.transport, synapse.name, synapse, status, start, message)
        return Outcome(status, message, synapse, endpoint, request_body=request_body, reason=reason_of(error))

    @staticmethod
    def stand_in(endpoint: Endpoint, credentials: Credentials | None, call: Call) -> Synapse:
        """The request's synapse from its headers alone (user fields at their zero values):
        what carries an error answered before the body was validated."""
        if credentials is None:
            return endpoint.header_synapse()
        base: dict[str, Any] = {
            "dendrite": credentials.dendrite(call.peer_ip, call.peer_port),
            "computed_body_hash": credentials.body_hash,
        }
        if credentials.timeout is not None:
            base["timeout"] = credentials.timeout
        return endpoint.header_synapse(**base)

    def unknown(self, name: str, start: float | None = None, codec: Codec | None = None) -> Outcome:
        """404, as the legacy server answers it: an unsigned base synapse (over gRPC naming rule R1)."""
        start = time.time() if start is None else start
        return self._unsigned(Synapse(), unknown_synapse(name, self.endpoints, rule=RULE_METHOD), start, codec)

    def _unsigned(self, synapse: Synapse, error: AxonError, start: float, codec: Codec | None = None) -> Outcome:
        status, message = describe(error, synapse.name)
        message = with_rule(message, error, codec)
        synapse.__dict__["axon"] = TerminalInfo.model_construct(
            status_code=status, status_message=message, process_time=time.time() - start
        )
        return Outcome(status, message, synapse, reason=reason_of(error))
