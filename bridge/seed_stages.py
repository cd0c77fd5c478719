"""The seed's stage API of ``AxonMiddleware`` (``preprocess``, ``blacklist``, ``verify``,
``priority``, ``run``, ``synapse_to_response``) and ``verify_body_integrity``: one
compatibility module, each method one step of the pipeline (:mod:`axon_grpc.server.pipeline`),
never a second copy of it. A request the bridge serves goes through ``Pipeline.handle``;
these are for miners' code and tests that call the SDK's stages one by one.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response

from axon_grpc.auth.credentials import CRYPTO, Credentials
from axon_grpc.errors import AxonError, RequestTooLarge
from axon_grpc.server.call import Call, parse_peer
from axon_grpc.server.endpoints import unknown_synapse
from axon_grpc.synapse import Synapse
from axon_grpc.transports.json_body import JSON_CODEC, load_json_object, synapse_data

from .limits import header_map
from .responses import error_reply, json_invalid_detail, to_response

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.server.compose import TransportParts
    from axon_grpc.server.endpoints import Endpoint

    from .exchange import Exchange
    from .limits import Limits


@contextmanager
def _recorded(synapse: Synapse) -> Iterator[None]:
    """An axon refusal raised inside also sets ``synapse.axon``'s status, as the SDK's stages do."""
    try:
        yield
    except AxonError as e:
        if synapse.axon is not None:
            synapse.axon.__dict__.update(status_code=int(e.status_code), status_message=e.message)
        raise


class SeedStages:
    """The seed's stage methods over a bridge's collaborators (``parts``) and ``exchange``."""

    parts: TransportParts
    exchange: Exchange

    def _endpoint(self, name: str | None) -> Endpoint:
        endpoint = self.parts.endpoints.get(str(name))
        if endpoint is None:
            raise unknown_synapse(str(name), self.parts.endpoints)
        return endpoint

    async def preprocess(self, request: Request) -> Synapse:
        """The synapse of ``request``'s headers (user fields at their zero values), with the
        axon's terminal info filled and signed. Hooks in the pipeline never see this one:
        they get the synapse built from the signed body."""
        pipeline = self.parts.pipeline
        endpoint = self._endpoint(request.url.path.split("/")[1])
        headers, _ = header_map(request.headers.raw)
        peer_ip, peer_port = parse_peer(tuple(request.client) if request.client else None)
        call = Call(name=endpoint.name, headers=headers, codec=JSON_CODEC, peer_ip=peer_ip, peer_port=peer_port)
        synapse = pipeline.stand_in(endpoint, Credentials.read(headers), call)
        synapse.__dict__["axon"] = pipeline.terminal.info(100, None)
        pipeline.terminal.sign(synapse)
        return synapse

    async def blacklist(self, synapse: Synapse) -> None:
        """Raise :class:`~axon_grpc.errors.BlacklistedException` (403) if ``blacklist_fn`` refuses;
        as the SDK's, the refusal is also written to ``synapse.axon``."""
        with _recorded(synapse):
            await self.parts.pipeline.blacklist(self._endpoint(synapse.name), synapse)

    async def verify(self, synapse: Synapse, headers: Mapping[str, str] | None = None) -> None:
        """Signature and nonce (legacy scheme), then the miner's checks; raises
        :class:`~axon_grpc.errors.NotVerifiedException` (401), written to ``synapse.axon`` too."""
        pipeline = self.parts.pipeline
        crypto = (headers or {}).get(CRYPTO, "sr25519")
        with _recorded(synapse):
            await pipeline.verifier.verify_legacy(synapse, crypto)
            await pipeline.verify_hooks(self._endpoint(synapse.name), synapse)

    async def priority(self, synapse: Synapse) -> float:
        """The priority ``priority_fn`` gives ``synapse`` (0.0 without one)."""
        return await self.parts.pipeline.priority(self._endpoint(synapse.name), synapse)

    async def run(self, synapse: Synapse, body: Mapping[str, Any], priority: float = 0.0) -> Synapse:
        """Body stage and forward for a verified header synapse; returns the answered synapse."""
        pipeline = self.parts.pipeline
        endpoint = self._endpoint(synapse.name)
        full = pipeline.validate(endpoint, synapse_data(endpoint, body, synapse.__dict__))
        pipeline.check_legacy_hash(endpoint, full, synapse.computed_body_hash)
        return await pipeline.forward(endpoint, full, priority, JSON_CODEC)

    def synapse_to_response(self, synapse: Synapse) -> Response:
        """The legacy response for ``synapse``: 200 with its JSON, else ``{"message": ...}``."""
        info = synapse.axon
        if info is not None and info.status_code in (None, 100):
            info.__dict__.update(status_code=200, status_message="Success")
        endpoint = self.parts.endpoints.get(str(synapse.name))
        if endpoint is None or not isinstance(synapse, endpoint.synapse_class):
            return to_response(error_reply(synapse))
        route = self.exchange.route(endpoint)
        ok = info is None or info.status_code == 200
        return to_response(route.success(synapse, {}) if ok else route.error(synapse))


async def verify_body_integrity(parts: TransportParts, limits: Limits, request: Request) -> dict[str, Any]:
    """The request's JSON body, once its legacy body hash matches ``computed_body_hash``.

    Not JSON: FastAPI's 422 (``RequestValidationError``); not an object of the route's
    synapse: 400; hash mismatch: 400 ``Hash mismatch: computed_body_hash is not the hash
    of this body's required_hash_fields`` (neither hash echoed).
    """
    raw = await request.body()
    if len(raw) > limits.max_request_bytes:
        raise RequestTooLarge(limits.too_large_message())
    name = request.url.path.split("/")[1]
    endpoint = parts.endpoints.get(name)
    if endpoint is None:
        raise unknown_synapse(name, parts.endpoints)
    try:
        payload = load_json_object(raw, endpoint.name)
    except json.JSONDecodeError as e:
        raise RequestValidationError(json_invalid_detail(e)) from None
    pipeline = parts.pipeline
    synapse = pipeline.validate(endpoint, synapse_data(endpoint, payload, endpoint.defaults_for_missing()))
    pipeline.check_legacy_hash(endpoint, synapse, request.headers.get("computed_body_hash", ""))
    return payload
