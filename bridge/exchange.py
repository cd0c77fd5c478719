"""One legacy HTTP exchange, run through the transport-neutral pipeline.

Headers -> :meth:`Pipeline.admit` (route, header synapse, blacklist, verify,
priority) -> body (JSON, legacy field hash) -> forward -> legacy response.

The forward sees the synapse built from the verified headers plus the body's user
fields. A 200 answers like the legacy server, whose response is the synapse parsed
from the body: its JSON and headers carry the request body's ``dendrite``/``axon``
blocks and sizes (with the axon's status filled in), so a legacy dendrite reads back
exactly what it would from a legacy axon. Errors carry the header synapse, signed by
the axon (``bt_header_axon_signature``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping, Optional

from pydantic import BaseModel, ValidationError

from axon_grpc import btauth
from axon_grpc.errors import Status, SynapseParsingError, UnknownSynapseError
from axon_grpc.pipeline import Endpoint, log_and_handle_error
from axon_grpc.synapse import BASE_FIELDS, Synapse, TerminalInfo

from axon_grpc.streaming import chunk_encoder

from .responses import (
    Reply,
    StreamReply,
    body_hash_of,
    error_reply,
    json_invalid_reply,
    json_reply,
    status_headers,
    stream_reply,
    synapse_headers,
)

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.axon import Axon
    from axon_grpc.pipeline import Pipeline

logger = logging.getLogger("axon_grpc.bridge")

#: Reads the whole request body (raises :class:`~axon_grpc.errors.RequestTooLarge`).
BodyReader = Callable[[], Awaitable[bytes]]

_NOTHING = object()

#: Longest route name quoted back in a 404 message.
MAX_QUOTED_NAME = 128


class _Echo(BaseModel):
    """The request body's base fields a legacy 200 answers with (each optional)."""

    total_size: Optional[int] = None
    header_size: Optional[int] = None
    dendrite: Optional[TerminalInfo] = None
    axon: Optional[TerminalInfo] = None
    computed_body_hash: Optional[str] = None


_ECHOED = tuple(_Echo.model_fields)


@dataclass
class Route:
    """What the bridge caches per attached synapse class."""

    endpoint: Endpoint
    user_fields: tuple[str, ...] = field(init=False)
    required_fields: tuple[str, ...] = field(init=False)
    hash_fields: tuple[str, ...] = field(init=False)
    streaming: bool = field(init=False)

    def __post_init__(self) -> None:
        cls = self.endpoint.synapse_class
        self.user_fields = tuple(n for n in cls.model_fields if n not in BASE_FIELDS)
        self.required_fields = tuple(cls.get_required_fields())
        self.hash_fields = tuple(cls.required_hash_fields)
        self.streaming = self.endpoint.streaming

    def values(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The user fields present in a request body."""
        return {key: payload[key] for key in self.user_fields if key in payload}

    def error(self, synapse: Synapse) -> Reply:
        if isinstance(synapse, self.endpoint.synapse_class):
            return error_reply(synapse, self.required_fields, self.hash_fields)
        return error_reply(synapse)

    def fields_success(self, result: Synapse) -> Reply:
        """A btauth caller's 200: JSON of the user fields, the axon's status in headers."""
        body = result.__pydantic_serializer__.to_json(result, include=set(self.user_fields))
        return json_reply(200, body, status_headers(result))

    def success(self, result: Synapse, payload: Mapping[str, Any]) -> Reply:
        """The legacy 200: ``model_dump()`` JSON and ``to_headers()`` of the answered synapse."""
        echo = _echo(payload)
        if echo is not None:
            values = result.__dict__
            info = values["axon"]
            for key in echo.model_fields_set:
                values[key] = getattr(echo, key)
            if "axon" in echo.model_fields_set and echo.axon is not None and info is not None:
                echo.axon.__dict__.update(
                    status_code=info.status_code, status_message=info.status_message, process_time=info.process_time
                )
        body = result.__pydantic_serializer__.to_json(result)
        hashed = body_hash_of(result, self.hash_fields)
        return json_reply(200, body, synapse_headers(result, self.required_fields, hashed, len(body)))


def load_json_object(raw: bytes, name: str) -> dict[str, Any]:
    """The request body as a JSON object (empty: ``{}``).

    Raises :class:`json.JSONDecodeError` when it is not JSON (FastAPI's 422) and
    :class:`~axon_grpc.errors.SynapseParsingError` when it is JSON of another shape (400).
    """
    try:
        payload = json.loads(raw) if raw else {}
    except UnicodeDecodeError:
        raise SynapseParsingError("Improperly formatted request. Could not parse body: not UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise SynapseParsingError(
            f"Improperly formatted request. Could not parse body into synapse of type {name}: "
            f"expected a JSON object, got {type(payload).__name__}"
        )
    return payload


def _echo(payload: Mapping[str, Any]) -> _Echo | None:
    present = {key: payload[key] for key in _ECHOED if key in payload}
    if not present:
        return None
    try:
        return _Echo.model_validate(present)
    except ValidationError:
        return None  # malformed client-side blocks: answer with the header-built ones


def _peer(client: tuple[str, int] | list[Any] | None) -> tuple[str | None, int | None]:
    if not client:
        return None, None
    host, port = client[0], client[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]  # an IPv4 client of a dual-stack socket
    return host, port


class Exchange:
    """Runs legacy requests through the axon's pipeline and shapes the answers."""

    def __init__(self, axon: Axon) -> None:
        self.axon = axon
        self.pipeline: Pipeline = axon.pipeline
        self._routes: dict[str, Route] = {}

    def route(self, endpoint: Endpoint) -> Route:
        """The cached :class:`Route` of ``endpoint`` (rebuilt when it is re-attached)."""
        found = self._routes.get(endpoint.name)
        if found is None or found.endpoint is not endpoint:
            found = self._routes[endpoint.name] = Route(endpoint)
        return found

    async def handle(
        self,
        name: str,
        headers: Mapping[str, str],
        client: Any,
        read_body: BodyReader,
        method: str = "POST",
        path: str | None = None,
    ) -> Reply | StreamReply:
        """Answer one request for synapse ``name``; never raises for bad input.

        A btauth request (``X-Bittensor-Version``) signs the raw body, so its body is
        read first, and its 200 is JSON of the synapse's user fields only (with the
        axon's status headers), as SDK 11 callers expect; the legacy 200 is the whole
        synapse.
        read before admission; a legacy request's only once it is admitted.
        """
        start = time.time()
        pipeline = self.pipeline
        peer_ip, peer_port = _peer(client)
        raw: bytes | None = None
        signed_body = btauth.is_btauth(headers)
        try:
            if signed_body:
                raw = await read_body()
            endpoint, header_synapse, priority = await pipeline.admit(
                name, headers, peer_ip, peer_port, raw, method, path if path is not None else f"/{name}"
            )
        except UnknownSynapseError as e:
            return self.not_found_reply(e, start)
        except Exception as e:
            return self._error(pipeline.fail(pipeline.error_synapse(e), e, start))
        route = self.route(endpoint)
        try:
            if raw is None:
                raw = await read_body()
            try:
                payload = load_json_object(raw, name)
            except json.JSONDecodeError as e:
                logger.debug("%s refused with 422: body is not JSON", name)
                return json_invalid_reply(e)
            if route.streaming:
                return await self.open_stream(route, header_synapse, payload, priority, start, headers)
            result = await self.run(route, header_synapse, payload, priority, start, headers)
            reply = route.fields_success(result) if signed_body else route.success(result, payload)
        except Exception as e:
            return route.error(pipeline.fail(header_synapse, e, start))
        _log_call(name, header_synapse, 200, start)
        return reply

    async def run(
        self,
        route: Route,
        header_synapse: Synapse,
        payload: Mapping[str, Any],
        priority: float,
        start: float,
        headers: Mapping[str, str] | None = None,
    ) -> Synapse:
        """The body stage and the forward of an admitted request; returns the answered synapse."""
        synapse = self._with_body(route, header_synapse, payload, headers)
        result = await self.pipeline.forward(route.endpoint, synapse, priority, header_synapse.timeout)
        return self.pipeline.succeed(result, header_synapse, start)

    def _with_body(
        self, route: Route, header_synapse: Synapse, payload: Mapping[str, Any], headers: Mapping[str, str] | None
    ) -> Synapse:
        """The full synapse from the body's user fields, checked against the legacy body hash."""
        synapse = self.pipeline.with_body(route.endpoint, header_synapse, route.values(payload))
        self.pipeline.check_body_hash(header_synapse, body_hash_of(synapse, route.hash_fields), headers)
        return synapse

    async def open_stream(
        self,
        route: Route,
        header_synapse: Synapse,
        payload: Mapping[str, Any],
        priority: float,
        start: float,
        headers: Mapping[str, str] | None = None,
    ) -> StreamReply:
        """A streaming synapse's answer: 200 ``text/event-stream``, the chunks as the body.

        The first chunk is awaited before answering, so a request refused by admission
        (503, 408) or failing at once still gets its status; a failure after the status
        was sent ends the body early (logged).
        """
        pipeline, endpoint = self.pipeline, route.endpoint
        synapse = self._with_body(route, header_synapse, payload, headers)
        chunks = pipeline.stream(endpoint, synapse, priority, header_synapse.timeout)
        encode = chunk_encoder(endpoint.synapse_class)  # type: ignore[arg-type]
        try:
            first: Any = await chunks.__anext__()
        except StopAsyncIteration:
            first = _NOTHING
        except BaseException:
            await chunks.aclose()  # type: ignore[attr-defined]
            raise
        pipeline.succeed(synapse, header_synapse, start)
        name = endpoint.name

        async def body() -> AsyncIterator[bytes]:
            try:
                if first is not _NOTHING:
                    yield encode(first)
                async for chunk in chunks:
                    yield encode(chunk)
            except Exception as e:  # the status is already sent: log and end the body
                pipeline.fail(header_synapse, e, start)
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]
            _log_call(name, header_synapse, 200, start)

        return stream_reply(synapse, route.required_fields, body_hash_of(synapse, route.hash_fields), body())

    def not_found(self, name: str) -> Reply:
        """The legacy 404 for a route that is no attached synapse."""
        start = time.time()
        try:
            self.pipeline.endpoint(name[:MAX_QUOTED_NAME])
        except UnknownSynapseError as e:
            return self.not_found_reply(e, start)
        # Attached meanwhile, but not reachable by this method or path.
        return self.plain_error(Status.NOT_FOUND, f"Synapse {name} is not served at this path or method")

    def not_found_reply(self, error: UnknownSynapseError, start: float) -> Reply:
        # As the legacy server: an unsigned base synapse, only the axon status filled.
        return self._error(log_and_handle_error(Synapse(), error, start_time=start))

    def plain_error(self, status: int, message: str) -> Reply:
        """A refusal before any synapse exists (413, 431): base-synapse headers, no signature."""
        synapse = Synapse()
        info = synapse.axon
        assert info is not None
        info.__dict__.update(status_code=int(status), status_message=message)
        logger.debug("request refused with %s: %s", int(status), message)
        return error_reply(synapse)

    def _error(self, synapse: Synapse) -> Reply:
        endpoint = self.axon.endpoints.get(str(synapse.name))
        if endpoint is not None and isinstance(synapse, endpoint.synapse_class):
            return self.route(endpoint).error(synapse)
        return error_reply(synapse)


def _log_call(name: str, synapse: Synapse, status: int, start: float) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        d = synapse.dendrite
        elapsed_ms = (time.time() - start) * 1e3
        logger.debug("http %s from %s -> %s in %.2f ms", name, d.hotkey if d else None, status, elapsed_ms)
