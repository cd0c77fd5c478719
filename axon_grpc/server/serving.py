"""How an axon is published and withdrawn: the serving lifecycle behind ``Axon.start_async``
and ``Axon.stop_async``.

Publishing builds the grpc.aio server (and the HTTP bridge when asked for or when Envoy
fronts the axon), starts the Envoy edge process of :mod:`axon_grpc.edge.proxy` unless the
axon serves directly, and the ``/metrics`` listener; a failure part-way stops what had
started, in reverse. Withdrawing turns health NOT_SERVING, closes Envoy's listeners,
drains the calls in flight on every transport within the grace, then stops Envoy and
closes the stores the axon opened.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from axon_grpc.edge.config import connection_budget, raise_open_files_limit
from axon_grpc.edge.proxy import PEER_HEADER, proxy_for
from axon_grpc.transports.grpc_aio import GrpcServer, GrpcSettings

if TYPE_CHECKING:
    from axon_grpc.server.axon import Axon
    from axon_grpc.server.compose import TransportParts

logger = logging.getLogger("axon_grpc")

#: gRPC calls at once beyond what admission holds (running plus queued): health checks,
#: reflection, calls refused before admission. Past them, RESOURCE_EXHAUSTED.
RPC_HEADROOM = 32


def load_transport(name: str) -> Callable[[TransportParts], Any]:
    """A transport factory registered under the ``axon_grpc.transports`` entry points.

    The HTTP bridge registers itself there, so the core never imports it.
    """
    for entry in entry_points(group="axon_grpc.transports"):
        if entry.name == name:
            return entry.load()  # type: ignore[no-any-return]
    raise RuntimeError(f"no '{name}' transport is installed (entry point group axon_grpc.transports)")


class FromBridge:
    """A seed attribute that is the HTTP bridge's (``axon.http``) of the same name; None
    without a bridge."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, axon: Any, owner: type | None = None) -> Any:
        return self if axon is None else getattr(axon.http, self.name, None)


def grpc_settings(axon: Axon) -> GrpcSettings:
    """The gRPC server's settings from the axon's: its limits, and a cap on calls at once of
    what admission can hold plus room for health checks."""
    settings = GrpcSettings(
        axon.ip, axon.port, axon.max_request_bytes, axon.max_metadata_bytes, axon.reuse_port, **axon.grpc_limits
    )
    if settings.max_concurrent_rpcs is None:
        settings.max_concurrent_rpcs = axon.admission.slots + axon.admission.max_queue + RPC_HEADROOM
    return settings


async def publish(axon: Axon, edge: bool | None) -> None:
    """Serve ``axon`` on the running loop: through Envoy or directly, as ``edge`` (or the
    axon's own setting, or ``$AXON_GRPC_EDGE``) says."""
    axon.prepare()
    raise_open_files_limit()
    proxy = axon.proxy = proxy_for(axon, edge if edge is not None else axon.edge)
    settings = grpc_settings(axon)
    if proxy is not None:
        settings.unix_socket, settings.peer_header = proxy.grpc_socket, PEER_HEADER
    else:
        settings.max_connections = connection_budget(settings.max_connections, servers=2)
    axon.drain.reset()
    server = GrpcServer(
        settings,
        axon.endpoints,
        axon.pipeline.handle,
        axon.extra_services,
        axon.drain,
        codec=axon.grpc_codec,
        sessions=axon.sessions,
    )
    started: list[Callable[[], Awaitable[None]]] = []
    try:
        bound = await server.start()
        started.append(lambda: server.stop(None))
        axon.grpc_server = server
        http = axon.http if (axon.http_port is not None or proxy is not None) else None
        if http is not None:
            http.peer_header = PEER_HEADER if proxy is not None else None
            await http.start(proxy.http_socket if proxy is not None else None)
            started.append(lambda: http.stop(None))
        if proxy is not None:
            ports = await proxy.start(with_http=http is not None)
            started.append(proxy.stop)
            bound = ports[0]
            if http is not None:
                http.bound_port = ports[-1]
        axon.bound(bound)
        if http is not None and axon.http_port == 0:  # the system's pick
            axon.http_port = http.bound_port
        if axon.metrics is not None:
            axon.metrics_port = axon.metrics_listener.start(axon.metrics, axon.metrics_port, axon.ip)
    except BaseException:
        for stop in reversed(started):
            await stop()
        axon.proxy = None
        raise
    gc.freeze()  # what start-up built is long-lived: keep it out of the collector's scans
    how = f"through Envoy (pid {proxy.pid})" if proxy is not None else "directly"
    logger.info("axon serving %s on %s:%s %s", list(axon.endpoints), axon.ip, axon.port, how)


async def withdraw(axon: Axon, grace: float | None) -> None:
    """Stop serving ``axon``: no new work at once, the calls in flight drained within
    ``grace`` (what still runs then is answered 503), then Envoy and the owned stores closed."""
    axon.metrics_listener.stop()
    server, http, proxy = axon.grpc_server, axon.http_bridge, axon.proxy
    if server is not None:
        await server.not_serving()
    if proxy is not None:
        await proxy.stop_listening()  # no new connections; those open finish their calls
    stopping = [asyncio.ensure_future(server.stop(grace))] if server is not None else []
    if http is not None:
        stopping.append(asyncio.ensure_future(http.stop(grace)))
    try:
        await axon.drain.wait(grace)
    finally:
        await asyncio.gather(*stopping)
        if proxy is not None:
            await proxy.flushed(1.0)  # the last answers leave Envoy
            await proxy.stop()
            axon.proxy = None
    for store in axon.owned_stores:
        await store.close()
