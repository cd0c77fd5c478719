"""The one ASGI application Envoy serves: gRPC and the legacy HTTP protocol on one port.

Requests with ``content-type: application/grpc`` (``+proto``, ``;...``) go to the gRPC
adapter (the axon's methods, health, reflection); every other request goes to the
legacy HTTP bridge, unchanged. Inside Envoy the application is imported as
``axon_grpc.edge.app:app``; at ASGI lifespan startup (or at the first request when the
server runs no lifespan) it calls the factory named by ``$AXON_GRPC_EDGE_FACTORY``
(``module:function`` returning an unstarted Axon), as uvicorn imports an app.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any, Callable

from axon_grpc.transports.asgi_health import Health
from axon_grpc.transports.asgi_reflection import SERVICES as REFLECTION_SERVICES
from axon_grpc.transports.asgi_reflection import Reflection
from axon_grpc.transports.grpc_asgi import DEFAULT_MAX_MESSAGE_BYTES, GrpcAsgi, Receive, Scope, Send

logger = logging.getLogger("axon_grpc.edge")

#: Environment of the Envoy process: what to serve and how to hear of a drain.
FACTORY_ENV = "AXON_GRPC_EDGE_FACTORY"
DRAIN_FILE_ENV = "AXON_GRPC_EDGE_DRAIN_FILE"
APP_DIR_ENV = "AXON_GRPC_EDGE_APP_DIR"
LOG_LEVEL_ENV = "AXON_GRPC_EDGE_LOG_LEVEL"
PORT_ENV = "AXON_GRPC_EDGE_PORT"

ASGIApp = Callable[[Scope, Receive, Send], Any]


def is_grpc(scope: Scope) -> bool:
    """True for gRPC content types (``application/grpc``, ``+proto``, ``;...``), not gRPC-Web."""
    for key, value in scope["headers"]:
        if key == b"content-type":
            return value == b"application/grpc" or value.startswith((b"application/grpc+", b"application/grpc;"))
    return False


class EdgeApp:
    """Routes each HTTP request by its content type to ``grpc`` or ``http`` (two ASGI apps)."""

    def __init__(self, grpc: ASGIApp, http: ASGIApp, health: Health | None = None) -> None:
        self.grpc = grpc
        self.http = http
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await (self.grpc if is_grpc(scope) else self.http)(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)


async def _lifespan(receive: Receive, send: Send, startup: Callable[[], Any] | None = None) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            try:
                if startup is not None:
                    startup()
            except Exception as e:
                logger.exception("the edge application could not start")
                await send({"type": "lifespan.startup.failed", "message": f"{type(e).__name__}: {e}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def use_edge_port(axon: Any, port: int) -> None:
    """Make the edge's one port the axon's: ``info()``, ``serve()`` and its answers advertise it.

    Behind Envoy both protocols share the listener, so the HTTP bridge has no port of its
    own; an ``external_port`` left at the axon's port (or set to the bridge's, as for the
    in-process servers) becomes the edge's port, and one set to anything else (a NAT
    mapping) is kept. Call it before ``axon.prepare()``.
    """
    if axon.external_port in (axon.port, axon.http_port):
        axon.external_port = port
    axon.port = port
    axon.http_port = None
    axon.full_address = f"{axon.ip}:{port}"


def for_axon(axon: Any, *, codec: Any = None, drain_file: str | None = None) -> EdgeApp:
    """The edge application of ``axon``: its pipeline over gRPC, its HTTP bridge, health, reflection."""
    from axon_grpc.server.serving import load_transport
    from axon_grpc.transports.aio_discovery import SERVICE_NAME, DescriptorSource
    from axon_grpc.transports.grpc_codec import GRPC_CODEC

    axon.prepare()
    if axon.metrics is not None:
        axon.metrics.set_mode("envoy")
    if codec is None:
        codec = getattr(axon, "grpc_codec", GRPC_CODEC)
    bridge = axon.http if axon.http_port else None
    if bridge is None:  # the bridge without a port of its own: Envoy's listener serves it
        bridge = load_transport("http")(axon.transport_parts(port=0))
        for endpoint in axon.endpoints.values():
            bridge.add_route(endpoint)
    health = Health((SERVICE_NAME,), drain_file=drain_file)
    source = DescriptorSource(axon.endpoints)
    reflection = Reflection(source, (SERVICE_NAME, "grpc.health.v1.Health", REFLECTION_SERVICES[0]))
    grpc = GrpcAsgi(
        axon.pipeline,
        codec,
        max_message_bytes=int(getattr(axon, "max_request_bytes", DEFAULT_MAX_MESSAGE_BYTES)),
        services={**health.methods(), **reflection.methods()},  # type: ignore[dict-item]
        open_session=_open_session(axon, codec),
    )
    gc.freeze()  # what start-up built is long-lived: keep it out of the collector's scans
    return EdgeApp(grpc, bridge.asgi, health)


def _open_session(axon: Any, codec: Any) -> Any:
    """The ASGI ``Session/Open`` of an axon serving sessions, else None."""
    sessions = getattr(axon, "sessions", None)
    if sessions is None:
        return None
    from axon_grpc.transports.session_open import asgi_open

    return asgi_open(sessions, getattr(codec, "trailers", ()))


class LazyEdgeApp:
    """``axon_grpc.edge.app:app``: builds the :class:`EdgeApp` from the environment once."""

    def __init__(self) -> None:
        self._app: EdgeApp | None = None

    def build(self) -> EdgeApp:
        if self._app is None:
            from axon_grpc.server.workers import build

            level = os.environ.get(LOG_LEVEL_ENV)
            if level:
                logging.basicConfig(
                    level=level.upper(), format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
                )
            app_dir = os.environ.get(APP_DIR_ENV)
            if app_dir and app_dir not in sys.path:
                sys.path.insert(0, app_dir)
            factory = os.environ.get(FACTORY_ENV)
            if not factory:
                raise RuntimeError(f"${FACTORY_ENV} names no axon factory (module:function)")
            axon = build(factory)
            port = os.environ.get(PORT_ENV)
            if port:
                use_edge_port(axon, int(port))
            self._app = for_axon(axon, drain_file=os.environ.get(DRAIN_FILE_ENV))
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.build)
            return
        app = self._app or self.build()
        await app(scope, receive, send)


app = LazyEdgeApp()
