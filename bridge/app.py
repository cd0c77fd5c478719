"""``HttpBridge``: the axon's HTTP transport for legacy (SDK 7.2-10.5) dendrites.

The axon builds it when ``http_port`` is set and calls ``add_route`` at every
``attach``, ``start``/``stop`` with the gRPC server, and ``verify_body_integrity``.
``app`` (FastAPI) lists one ``POST``/``GET /{Name}`` route per synapse, held by
``router``, and ``GET /metrics`` (the axon's Prometheus metrics) unless metrics are off;
uvicorn serves :class:`AxonMiddleware` in front of it, which answers those
routes without FastAPI's layers and hands every other request to the app.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from axon_grpc.errors import AxonError
from axon_grpc.server.compose import TransportParts
from axon_grpc.server.endpoints import Endpoint
from axon_grpc.server.reporting import log_and_handle_error
from axon_grpc.synapse import Synapse

from .exchange import Exchange
from .limits import DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_COUNT, Limits, header_map, read_body
from .middleware import AxonMiddleware, send_reply
from .responses import error_reply, to_response
from .seed_stages import verify_body_integrity
from .server import FastAPIThreadedServer, bind_socket, make_config

logger = logging.getLogger("axon_grpc.bridge")

SYNAPSE_ROUTE_METHODS = ("POST", "GET")
#: Seconds a scrape of ``GET /metrics`` is answered again rather than rebuilt. The route is on
#: the public port and a scrape costs a few ms of the event loop (tens of times a call), so a
#: stranger's flood of scrapes costs at most one a second; Prometheus scrapes every 15 s or so.
SCRAPE_REUSE_S = 1.0

#: The request body as the OpenAPI document shows it: the synapse's JSON (optional).
_REQUEST_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}}}


class HttpBridge:
    """Serves an axon's synapses over the legacy HTTP protocol on ``parts.host:parts.port``.

    Handed its collaborators (:class:`~axon_grpc.server.compose.TransportParts`: the
    endpoints, the pipeline, the drain, the metrics), never the Axon; an object with
    ``transport_parts()`` (an Axon) is read through it once, here.

    Bounds, read on every request (so they may be changed while serving):
    ``max_request_bytes`` (default ``parts.max_request_bytes``; 413),
    ``max_header_count`` (100) and ``max_header_bytes`` (32 KiB; 431).
    """

    middleware_cls = AxonMiddleware

    def __init__(
        self,
        parts: TransportParts | Any,
        *,
        max_request_bytes: int | None = None,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        if not isinstance(parts, TransportParts):
            parts = parts.transport_parts()
        self.parts: TransportParts = parts
        self.limits = Limits(
            max_request_bytes=max_request_bytes if max_request_bytes is not None else parts.max_request_bytes,
            max_header_count=max_header_count,
            max_header_bytes=max_header_bytes,
        )
        self.exchange = Exchange(parts.endpoints, parts.pipeline)
        self.app = FastAPI(
            title="axon-grpc HTTP bridge",
            description="Legacy Bittensor HTTP protocol: POST /{SynapseName} with bt_header_* headers.",
            docs_url=None,
            redoc_url=None,
            openapi_url=None,
        )
        self.router = APIRouter()
        self.app.router.default = self._not_found
        self.app.add_exception_handler(AxonError, self._axon_error)  # type: ignore[arg-type]
        #: The last scrape of ``/metrics``: ``(monotonic time, body, content type)``.
        self._scrape: tuple[float, bytes, str] | None = None
        if parts.metrics is not None:
            self.app.add_route("/metrics", self._metrics, methods=["GET"], include_in_schema=False)
        #: What uvicorn serves: the middleware in front of the app. (The app works alone too,
        #: its synapse routes run the same exchange; in front, they skip FastAPI's layers.)
        self.asgi = self.middleware_cls(self.app, None, bridge=self)
        host = parts.host.strip("[]") or "::"
        self.fast_config = make_config(self.asgi, host, parts.port, max_header_bytes=max_header_bytes)
        self.fast_server = FastAPIThreadedServer(config=self.fast_config)
        #: The port actually bound, once started.
        self.bound_port: int | None = None
        self._tcp_port = 0  #: the port the last TCP start bound: a restart binds it again
        #: Header holding the caller's address, trusted when serving behind the Envoy edge.
        self.peer_header: str | None = None

    # -- limits as attributes ----------------------------------------------------------------
    @property
    def max_request_bytes(self) -> int:
        return self.limits.max_request_bytes

    @max_request_bytes.setter
    def max_request_bytes(self, value: int) -> None:
        self.limits.max_request_bytes = int(value)

    @property
    def max_header_count(self) -> int:
        return self.limits.max_header_count

    @max_header_count.setter
    def max_header_count(self, value: int) -> None:
        self.limits.max_header_count = int(value)

    @property
    def max_header_bytes(self) -> int:
        return self.limits.max_header_bytes

    @max_header_bytes.setter
    def max_header_bytes(self, value: int) -> None:
        self.limits.max_header_bytes = int(value)

    # -- routes ----------------------------------------------------------------------------------
    def add_route(self, endpoint: Endpoint) -> None:
        """List ``POST``/``GET /{Name}`` for ``endpoint`` (replacing a previous one of that name)."""
        path = f"/{endpoint.name}"
        handler = self._route_handler(endpoint.name)
        added = [
            APIRoute(
                path,
                handler,
                methods=[method],
                name=endpoint.name,
                operation_id=f"{endpoint.name}_{method.lower()}",
                summary=f"Legacy call of synapse {endpoint.name}",
                description=(endpoint.synapse_class.__doc__ or "").strip() or None,
                openapi_extra=_REQUEST_BODY,
            )
            for method in SYNAPSE_ROUTE_METHODS
        ]
        for routes in (self.router.routes, self.app.router.routes):
            routes[:] = [r for r in routes if getattr(r, "path", None) != path]
            routes.extend(added)
        self.exchange.route(endpoint)

    def _route_handler(self, name: str) -> Any:
        exchange, limits = self.exchange, self.limits

        async def synapse_route(request: Request) -> Response:
            # Reached when the app is served without AxonMiddleware in front (e.g. a TestClient).
            headers, _ = header_map(request.headers.raw)
            client = (request.client.host, request.client.port) if request.client else None
            reply = await exchange.handle(
                name, headers, client, lambda: read_body(request.receive, limits), request.method, request.url.path
            )
            return to_response(reply)

        synapse_route.__name__ = f"synapse_{name}"
        return synapse_route

    async def _not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send_reply(send, self.exchange.not_found(scope["path"][1:]))

    async def _metrics(self, request: Request) -> Response:
        metrics = self.parts.metrics
        if metrics is None:  # the route is only added with metrics on; kept safe all the same
            return Response(status_code=404)
        now = time.monotonic()
        last = self._scrape
        if last is None or now - last[0] >= SCRAPE_REUSE_S:
            last = self._scrape = (now, *metrics.exposition())
        return Response(last[1], media_type=last[2])

    async def _axon_error(self, request: Request, exc: AxonError) -> Response:
        return to_response(error_reply(log_and_handle_error(Synapse(), exc)))

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, unix_socket: str | None = None) -> None:
        """Bind ``parts.host:parts.port`` (or ``unix_socket``, behind the Envoy edge) and
        serve on the running loop (raises OSError)."""
        parts = self.parts
        port = parts.port or self._tcp_port
        if unix_socket is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(unix_socket)
        else:
            sock = bind_socket(parts.host, port, reuse_port=parts.reuse_port)
        self.fast_config.port = port
        try:
            await self.fast_server.serve_in_loop([sock])
        except BaseException:
            sock.close()
            raise
        if unix_socket is not None:
            logger.info("HTTP bridge serving %s on %s", list(parts.endpoints), unix_socket)
            return
        self.bound_port = self._tcp_port = self.fast_config.port = int(sock.getsockname()[1])
        logger.info("HTTP bridge serving %s on %s:%s", list(parts.endpoints), self.fast_config.host, self.bound_port)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving; requests in flight get ``grace`` seconds."""
        await self.fast_server.shutdown_in_loop(grace)

    # -- seed API ------------------------------------------------------------------------------------
    async def verify_body_integrity(self, request: Request) -> dict[str, Any]:
        """The request's JSON body, once its legacy body hash matches (the seed's method; see
        :func:`bridge.seed_stages.verify_body_integrity`)."""
        return await verify_body_integrity(self.parts, self.limits, request)
