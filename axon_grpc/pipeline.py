"""The transport-neutral request pipeline.

preprocess -> blacklist -> verify -> priority -> body integrity + forward -> respond.

A transport hands the pipeline a header map (lowercase keys, string values), the
peer address and later the body; it gets back a synapse whose ``axon`` terminal info
carries the status. Every rule lives here once; the gRPC transport and the HTTP
bridge only translate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import inspect
import logging
import math
import sys
import time
import uuid as uuid_lib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping, cast

from pydantic import ValidationError

from . import btauth
from ._types import BlacklistFn, ForwardFn, PriorityFn, VerifyFn
from .admission import OVERLOADED
from .auth import CRYPTO_HEADER, response_message
from .errors import (
    AxonError,
    BlacklistedException,
    BodyHashMismatch,
    InternalServerError,
    NotVerifiedException,
    RequestTimeout,
    ServiceUnavailable,
    SynapseParsingError,
    UnknownSynapseError,
    status_of,
)
from .schema import SynapseSchema
from .streaming import is_streaming, open_stream
from .synapse import Synapse

if TYPE_CHECKING:  # pragma: no cover
    from .axon import Axon

logger = logging.getLogger("axon_grpc")

_IMMUTABLE = (int, float, str, bytes, bool, type(None), enum.Enum)


@dataclass
class Endpoint:
    """One attached synapse type and its functions, prepared at ``attach`` time."""

    name: str
    synapse_class: type[Synapse]
    schema: SynapseSchema
    forward_fn: ForwardFn
    blacklist_fn: BlacklistFn | None = None
    priority_fn: PriorityFn | None = None
    verify_fn: VerifyFn | None = None
    forward_is_async: bool = field(init=False)
    streaming: bool = field(init=False)
    zero_values: dict[str, Any] = field(init=False)
    zero_values_mutable: bool = field(init=False)

    def __post_init__(self) -> None:
        self.forward_is_async = inspect.iscoroutinefunction(self.forward_fn)
        self.streaming = is_streaming(self.synapse_class)
        self.zero_values = self.schema.zero_values()
        self.zero_values_mutable = any(not isinstance(v, _IMMUTABLE) for v in self.zero_values.values())

    def defaults_for_missing(self) -> dict[str, Any]:
        """Zero values for required user fields; fresh objects where they are mutable."""
        return self.schema.zero_values() if self.zero_values_mutable else self.zero_values


if sys.version_info >= (3, 11):

    async def within(awaitable: Awaitable[Any], seconds: float | None) -> Any:
        """Await with a time limit (``asyncio.timeout``: no extra task per call)."""
        async with asyncio.timeout(seconds):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def within(awaitable: Awaitable[Any], seconds: float | None) -> Any:
        """Await with a time limit."""
        return await asyncio.wait_for(awaitable, seconds)


async def _call_hook(fn: Callable[..., Any], synapse: Synapse) -> Any:
    result = fn(synapse)
    if inspect.isawaitable(result):
        result = await result
    return result


def _parse_error_detail(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "value"
    return f"{location}: {first.get('msg', 'invalid')}"


class Pipeline:
    """The stages every request passes, bound to one :class:`~axon_grpc.axon.Axon`."""

    def __init__(self, axon: Axon) -> None:
        self.axon = axon

    # -- stage 1: preprocess ----------------------------------------------------------
    def endpoint(self, name: str) -> Endpoint:
        found = self.axon.endpoints.get(name)
        if found is None:
            available = list(self.axon.endpoints)
            raise UnknownSynapseError(f"Synapse name '{name}' not found. Available synapses {available}")
        return found

    def preprocess(
        self, endpoint: Endpoint, headers: Mapping[str, str], peer_ip: str | None, peer_port: int | None
    ) -> Synapse:
        """Build the header-only synapse and fill the axon's terminal info (signed on reply)."""
        cls = endpoint.synapse_class
        inputs = cls.parse_headers_to_inputs(headers)
        if endpoint.zero_values:
            for key, value in endpoint.defaults_for_missing().items():
                inputs.setdefault(key, value)
        dendrite = inputs["dendrite"]
        if btauth.is_btauth(headers):
            dendrite.update(btauth.caller_fields(headers))
        dendrite["ip"] = peer_ip
        dendrite["port"] = peer_port
        try:
            synapse = cls.model_validate(inputs)
        except ValidationError as e:
            raise SynapseParsingError(
                f"Improperly formatted request. Could not parse headers into synapse of type {endpoint.name}: "
                f"{_parse_error_detail(e)}"
            ) from None
        self.fill_axon_info(synapse)
        timeout = synapse.timeout
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise SynapseParsingError(
                "Improperly formatted request. timeout must be a positive number of seconds", synapse
            )
        return synapse

    def error_synapse(self, exc: BaseException) -> Synapse:
        """The synapse to carry an error: the request's own, or a base synapse."""
        synapse = getattr(exc, "synapse", None)
        if isinstance(synapse, Synapse):
            return synapse
        synapse = Synapse()
        self.fill_axon_info(synapse)
        return synapse

    def fill_axon_info(self, synapse: Synapse) -> None:
        """The axon's own terminal info: version, uuid, a fresh nonce, hotkey."""
        axon = self.axon
        info = synapse.axon
        assert info is not None
        info.__dict__.update(
            version=axon.version, uuid=axon.uuid, nonce=time.time_ns(), hotkey=axon.wallet.hotkey.ss58_address,
            status_code=100,
        )

    def sign_response(self, synapse: Synapse) -> Synapse:
        """Sign ``{axon_nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}`` into ``synapse.axon``.

        Done for error answers only, as the legacy axon does: the message does not
        cover the body, so a signed success would prove no more than the unsigned one,
        and skipping it saves one sr25519 signature per call.
        """
        info = synapse.axon
        assert info is not None and synapse.dendrite is not None
        if info.nonce is None:
            self.fill_axon_info(synapse)
        hotkey = self.axon.wallet.hotkey
        message = response_message(info.nonce, synapse.dendrite.hotkey, hotkey.ss58_address, self.axon.uuid)  # type: ignore[arg-type]
        info.__dict__["signature"] = "0x" + bytes(hotkey.sign(message)).hex()
        return synapse

    def fail(self, synapse: Synapse, exception: BaseException, start_time: float | None = None) -> Synapse:
        """Record ``exception`` as the response status (see :func:`log_and_handle_error`) and sign it.

        Overload refusals (503) are not signed: they are the answers an axon sends most
        when it can least afford a signature each.
        """
        failed = log_and_handle_error(synapse, exception, start_time=start_time)
        if isinstance(exception, ServiceUnavailable):
            return failed
        return self.sign_response(failed)

    # -- stages 2-4: blacklist, verify, priority ----------------------------------------
    async def blacklist(self, endpoint: Endpoint, synapse: Synapse) -> None:
        if endpoint.blacklist_fn is None:
            return
        result = await _call_hook(endpoint.blacklist_fn, synapse)
        blacklisted, reason = result if isinstance(result, tuple) else (bool(result), "")
        if blacklisted:
            raise BlacklistedException(f"Forbidden. Key is blacklisted: {reason}.")

    async def verify(
        self,
        endpoint: Endpoint,
        synapse: Synapse,
        headers: Mapping[str, str],
        body: bytes | None = None,
        method: str = "POST",
        path: str = "",
    ) -> None:
        """The signature and nonce check always runs; a custom ``verify_fn`` runs after it.

        Requests carrying ``X-Bittensor-Version`` are checked by the btauth rules over
        ``method``, ``path`` and the raw ``body``; all others by the legacy rules.
        """
        axon = self.axon
        if btauth.is_btauth(headers):
            policy = axon.verify_policy
            await btauth.verify_btauth(
                headers, body, method=method, path=path, receiver=axon.wallet.hotkey.ss58_address,
                store=axon.btauth_nonce_store, max_age_s=policy.btauth_max_age_s,
                allowed_skew_s=policy.btauth_allowed_skew_s, require_receiver=policy.btauth_require_receiver,
            )
        else:
            await axon.default_verify(synapse, crypto=headers.get(CRYPTO_HEADER, "sr25519"))
        if endpoint.verify_fn is not None:
            try:
                await _call_hook(endpoint.verify_fn, synapse)
            except AxonError:
                raise
            except Exception as e:
                raise NotVerifiedException(f"Not Verified with error: {e}") from e

    async def priority(self, endpoint: Endpoint, synapse: Synapse) -> float:
        if endpoint.priority_fn is None:
            return 0.0
        value = await _call_hook(endpoint.priority_fn, synapse)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"priority_fn for {endpoint.name} returned {type(value).__name__}, not a number")
        return float(value)

    async def admit(
        self,
        name: str,
        headers: Mapping[str, str],
        peer_ip: str | None,
        peer_port: int | None,
        body: bytes | None = None,
        method: str = "POST",
        path: str = "",
    ) -> tuple[Endpoint, Synapse, float]:
        """Stages 1-4 on headers (and, for btauth, the raw body); raises to refuse.

        The body is not parsed here; btauth needs its bytes for the signature.
        """
        endpoint = self.endpoint(name)
        synapse = self.preprocess(endpoint, headers, peer_ip, peer_port)
        try:
            await self.blacklist(endpoint, synapse)
            if self.axon.admission.saturated:
                await self.refuse_early(endpoint, synapse)
            await self.verify(endpoint, synapse, headers, body, method, path)
            priority = await self.priority(endpoint, synapse)
        except Exception as e:
            e.synapse = getattr(e, "synapse", None) or synapse  # type: ignore[attr-defined]
            raise
        return endpoint, synapse, priority

    async def refuse_early(self, endpoint: Endpoint, synapse: Synapse) -> None:
        """Under overload, refuse (503) before the signature check what could not be admitted.

        Only refusals happen on the unverified synapse: a request that claims a high
        priority is verified as usual before it can displace anyone, and one that claims
        a low priority only harms its own chance. This keeps the cost of each refused
        request small when the axon is flooded.
        """
        claimed = await self.priority(endpoint, synapse)
        if not self.axon.admission.would_admit(claimed):
            self.axon.admission.stats.shed += 1
            raise ServiceUnavailable(OVERLOADED, synapse)

    # -- stage 5: body and forward --------------------------------------------------------
    @staticmethod
    def check_body_hash(synapse: Synapse, actual: str, headers: Mapping[str, str] | None = None) -> None:
        """Legacy scheme: the body must match the signed ``computed_body_hash``.

        A btauth signature already covers the exact body bytes, so nothing to do.
        """
        if headers is not None and btauth.is_btauth(headers):
            return
        claimed = synapse.computed_body_hash
        if claimed != actual:
            raise BodyHashMismatch(
                f"Hash mismatch between header body hash {claimed} and parsed body hash {actual}", synapse
            )

    @staticmethod
    def with_body(endpoint: Endpoint, header_synapse: Synapse, values: Mapping[str, Any]) -> Synapse:
        """The full synapse: header-built base fields plus the body's user fields."""
        data = dict(header_synapse.__dict__)
        data.update(values)
        try:
            return endpoint.synapse_class.model_validate(data)
        except ValidationError as e:
            raise SynapseParsingError(
                f"Improperly formatted request. Could not parse body into synapse of type {endpoint.name}: "
                f"{_parse_error_detail(e)}",
                header_synapse,
            ) from None

    async def forward(self, endpoint: Endpoint, synapse: Synapse, priority: float, timeout: float | None) -> Synapse:
        """Run the forward within ``timeout`` once admitted (async on the loop, sync on the pool).

        Waits for an admission slot in priority order; a request still queued at its
        deadline never runs (408), one shed from a full queue gets 503, and a forward
        still running at the deadline is cancelled (async) or has its late result
        discarded (sync).
        """
        deadline = await self._admit_slot(synapse, priority, timeout)
        admission = self.axon.admission
        remaining = None if deadline is None else deadline - time.monotonic()
        try:
            if endpoint.forward_is_async:
                try:
                    result = await within(cast(Awaitable[Synapse], endpoint.forward_fn(synapse)), remaining)
                finally:
                    admission.release()
            else:
                result = await self._run_sync(endpoint, synapse, priority, remaining)
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestTimeout(f"Response timeout after: {synapse.timeout}s", synapse) from None
        if not isinstance(result, endpoint.synapse_class):
            raise InternalServerError(
                f"forward for {endpoint.name} returned {type(result).__name__}, not {endpoint.name}", synapse
            )
        return result

    async def _admit_slot(self, synapse: Synapse, priority: float, timeout: float | None) -> float | None:
        """Wait for a forward slot; returns the monotonic deadline."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            await self.axon.admission.acquire(priority, deadline)
        except AxonError as e:
            e.synapse = synapse
            if isinstance(e, RequestTimeout):
                e.message = f"Response timeout after: {synapse.timeout}s"
            raise
        return deadline

    async def stream(
        self, endpoint: Endpoint, synapse: Synapse, priority: float, timeout: float | None
    ) -> AsyncIterator[Any]:
        """Chunks of a streaming forward, under the same admission and deadline as a call.

        Closing this generator (the caller went away, or the deadline passed) closes
        the forward's own generator, so it sees ``GeneratorExit`` or cancellation.
        """
        deadline = await self._admit_slot(synapse, priority, timeout)
        chunks: AsyncIterator[Any] | None = None
        try:
            chunks = await open_stream(
                endpoint.forward_fn, synapse,  # type: ignore[arg-type]
                lambda fn, s: self.axon.thread_pool.run(fn, s, priority=priority, deadline=deadline),
            )
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                try:
                    chunk = await within(chunks.__anext__(), remaining)
                except StopAsyncIteration:
                    return
                except (asyncio.TimeoutError, TimeoutError):
                    raise RequestTimeout(f"Response timeout after: {synapse.timeout}s", synapse) from None
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            self.axon.admission.release()

    async def _run_sync(self, endpoint: Endpoint, synapse: Synapse, priority: float, remaining: float | None) -> Any:
        """A sync forward on the pool; its admission slot is freed when the thread is done.

        One wake-up of the loop per call: the worker's completion both settles the
        caller's future and releases the slot. A result that arrives after the caller
        gave up is discarded and counted as late.
        """
        loop = asyncio.get_running_loop()
        admission = self.axon.admission
        waiter: asyncio.Future[Any] = loop.create_future()

        def finished(work: concurrent.futures.Future[Any]) -> None:
            admission.release()
            if waiter.done():
                if not work.cancelled():
                    admission.stats.late += 1
            elif work.cancelled():
                waiter.cancel()
            elif (error := work.exception()) is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(work.result())

        def on_done(work: concurrent.futures.Future[Any]) -> None:
            try:
                loop.call_soon_threadsafe(finished, work)
            except RuntimeError:  # the loop is closed: the axon has stopped
                pass

        work = self.axon.thread_pool.submit(endpoint.forward_fn, synapse, priority=priority)
        work.add_done_callback(on_done)
        return await within(waiter, remaining)

    # -- stage 6: respond -----------------------------------------------------------------
    @staticmethod
    def succeed(synapse: Synapse, header_synapse: Synapse, start_time: float) -> Synapse:
        """Mark the forward's synapse successful, carrying the header synapse's axon info."""
        info = synapse.axon
        source = header_synapse.axon
        assert info is not None and source is not None
        if info is not source:
            info.__dict__.update(source.__dict__)
        info.__dict__.update(status_code=200, status_message="Success", process_time=time.time() - start_time)
        return synapse


def log_and_handle_error(
    synapse: Synapse,
    exception: BaseException,
    status_code: int | None = None,
    start_time: float | None = None,
) -> Synapse:
    """Record an error on ``synapse.axon`` and log it; returns the synapse.

    Axon errors (refusals, overload, a miner's SynapseException) keep their message
    and are logged at debug level. Anything unexpected becomes ``Internal Server Error #{id}`` on the wire and is
    logged with its traceback under that id; its text never leaves the server.
    """
    carried = getattr(exception, "synapse", None)
    if isinstance(carried, Synapse):
        synapse = carried
    status = status_code if status_code is not None else status_of(exception)
    if isinstance(exception, AxonError) and not isinstance(exception, InternalServerError):
        message = exception.message
        logger.debug("%s refused with %s: %s", synapse.name, status, message)
    else:
        error_id = str(uuid_lib.uuid4())
        message = f"Internal Server Error #{error_id}"
        logger.error("%s failed: error id %s", synapse.name, error_id, exc_info=exception)
    info = synapse.axon
    assert info is not None
    info.__dict__.update(status_code=status, status_message=message)
    if start_time is not None:
        info.__dict__["process_time"] = time.time() - start_time
    return synapse
