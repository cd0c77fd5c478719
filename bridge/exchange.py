"""One legacy HTTP exchange: the request as a :class:`~axon_grpc.server.call.Call`, the answer from its Outcome.

The pipeline does the work; this module only shapes answers the way a legacy (SDK
7.2-10.5) dendrite reads them. A 200 answers like the legacy server, whose response
is the synapse parsed from the body: its JSON and headers carry the request body's
``dendrite``/``axon`` blocks and sizes (with the axon's status filled in). A btauth
caller's 200 is JSON of the user fields with the axon's status headers. Errors carry
the request's synapse, signed by the axon (``bt_header_axon_signature``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Optional

from pydantic import BaseModel, ValidationError

from axon_grpc.auth import btauth
from axon_grpc.errors import Status
from axon_grpc.server.call import BodyReader, Call, Outcome, parse_peer
from axon_grpc.server.endpoints import MAX_QUOTED_NAME, Endpoint
from axon_grpc.streaming import chunk_encoder
from axon_grpc.synapse import Synapse, TerminalInfo, legacy_body_hash, terminal_info
from axon_grpc.transports.json_body import JSON_CODEC

from .responses import (
    Reply,
    StreamReply,
    error_reply,
    json_invalid_reply,
    json_reply,
    status_headers,
    stream_reply,
    synapse_headers,
)

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.server.pipeline import Pipeline

__all__ = ["BodyReader", "Exchange", "Route"]


class _Echo(BaseModel):
    """The request body's base fields a legacy 200 answers with (each optional). Of its
    ``axon`` block only the shape is kept: the values are the axon's own."""

    total_size: Optional[int] = None
    header_size: Optional[int] = None
    dendrite: Optional[TerminalInfo] = None
    axon: Optional[TerminalInfo] = None
    computed_body_hash: Optional[str] = None


_ECHOED = tuple(_Echo.model_fields)


def _echo(payload: Mapping[str, Any]) -> _Echo | None:
    present = {key: payload[key] for key in _ECHOED if key in payload}
    if not present:
        return None
    try:
        return _Echo.model_validate(present)
    except ValidationError:
        return None  # malformed client-side blocks: answer with the axon's own


_INFO_FIELDS = tuple(TerminalInfo.model_fields)
#: What a legacy 200's axon block always carries.
_STATUS_FIELDS = frozenset({"status_code", "status_message", "process_time"})


def _own_info_shaped_like(own: TerminalInfo, sent: TerminalInfo) -> TerminalInfo:
    """The axon's own terminal info, limited to the fields the caller's block had (and the
    status): the legacy server answers with the caller's block, status filled in."""
    keep = {key for key, value in sent.__dict__.items() if value is not None} | _STATUS_FIELDS
    mine = own.__dict__
    if mine["signature"] is not None:
        keep.add("signature")  # a signed answer's signature
    return terminal_info(**{key: mine[key] for key in _INFO_FIELDS if key in keep})  # model_construct's, cheaper


class Route:
    """How one endpoint's answers are shaped."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.encode = chunk_encoder(endpoint.synapse_class) if endpoint.streaming else None  # type: ignore[arg-type]

    def error(self, synapse: Synapse) -> Reply:
        """The legacy error answer: the request's synapse with the axon's status.

        Its ``computed_body_hash`` is over the signed body's values once they were read
        (the legacy server hashed the unsigned ``bt_header_input_obj_*`` copies).
        """
        endpoint = self.endpoint
        if not isinstance(synapse, endpoint.synapse_class):
            return error_reply(synapse)
        return error_reply(synapse, endpoint.required_fields, endpoint.hash_fields)

    def fields_success(self, result: Synapse) -> Reply:
        """A btauth caller's 200: JSON of the user fields, the axon's status in headers."""
        body = result.__pydantic_serializer__.to_json(result, include=set(self.endpoint.user_fields))
        return json_reply(200, body, status_headers(result))

    def success(self, result: Synapse, payload: Mapping[str, Any]) -> Reply:
        """The legacy 200: ``model_dump()`` JSON and ``to_headers()`` of the answered synapse."""
        echo = _echo(payload)
        if echo is not None:
            values = result.__dict__
            for key in echo.model_fields_set:
                if key != "axon":
                    values[key] = getattr(echo, key)
            if echo.axon is not None and values["axon"] is not None:
                values["axon"] = _own_info_shaped_like(values["axon"], echo.axon)
        body = result.__pydantic_serializer__.to_json(result)
        hashed = legacy_body_hash(result, self.endpoint.hash_fields)
        return json_reply(200, body, synapse_headers(result, self.endpoint.required_fields, hashed, len(body)))

    def stream(self, outcome: Outcome) -> StreamReply:
        """200 ``text/event-stream``: the chunks as the body (a later failure ends it, logged)."""
        assert self.encode is not None
        endpoint, synapse = self.endpoint, outcome.synapse
        hashed = legacy_body_hash(synapse, endpoint.hash_fields)
        return stream_reply(synapse, endpoint.required_fields, hashed, outcome.encoded(self.encode), outcome)


class Exchange:
    """Legacy HTTP requests in, through the pipeline, legacy answers out."""

    def __init__(self, endpoints: Mapping[str, Endpoint], pipeline: Pipeline) -> None:
        self.endpoints = endpoints
        self.pipeline = pipeline
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
        """Answer one request for synapse ``name``; never raises for bad input."""
        peer_ip, peer_port = parse_peer(client)
        call = Call(
            name=name,
            headers=headers,
            codec=JSON_CODEC,
            read_body=read_body,
            peer_ip=peer_ip,
            peer_port=peer_port,
            method=method,
            path=path if path is not None else f"/{name}",
        )
        outcome = await self.pipeline.handle(call)
        return self.reply(outcome, btauth.is_btauth(headers))

    def reply(self, outcome: Outcome, fields_only: bool = False) -> Reply | StreamReply:
        """The legacy answer of ``outcome``; ``fields_only`` for btauth callers' 200s."""
        if isinstance(outcome.request_body, json.JSONDecodeError):
            return json_invalid_reply(outcome.request_body)
        endpoint = outcome.endpoint
        if endpoint is None:
            return error_reply(outcome.synapse)
        route = self.route(endpoint)
        if not outcome.ok:
            return route.error(outcome.synapse)
        if endpoint.streaming:
            return route.stream(outcome)
        if fields_only:
            return route.fields_success(outcome.synapse)
        return route.success(outcome.synapse, outcome.request_body or {})

    def not_found(self, name: str) -> Reply:
        """The legacy 404 for a route that is no attached synapse (or not at this path or method)."""
        if name in self.endpoints:
            message = f"Synapse {name[:MAX_QUOTED_NAME]} is not served at this path or method"
            return self.plain_error(Status.NOT_FOUND, message)
        return error_reply(self.pipeline.unknown(name).synapse)

    @staticmethod
    def plain_error(status: int, message: str) -> Reply:
        """A refusal before any synapse exists (413, 431): base-synapse headers, no signature."""
        synapse = Synapse()
        synapse.__dict__["axon"] = TerminalInfo.model_construct(status_code=int(status), status_message=message)
        return error_reply(synapse)
