"""``axon-grpc serve --server envoy``: the axon inside Envoy processes, drained on SIGTERM.

Each Envoy process (``--workers N`` of them share the port with SO_REUSEPORT) imports
``axon_grpc.edge.app:app``, which builds the axon from ``MODULE:FUNCTION``. This
process starts them, waits for SIGTERM/SIGINT, then drains: health turns NOT_SERVING,
the listeners stop accepting (Envoy's admin ``/drain_listeners``), calls in flight get
up to ``grace`` seconds to finish (watched through Envoy's active-request gauge), and
the processes are stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from axon_grpc.edge.app import APP_DIR_ENV, DRAIN_FILE_ENV, FACTORY_ENV, LOG_LEVEL_ENV, PORT_ENV
from axon_grpc.edge.config import EdgeLimits, TlsFiles, apply_limits, raise_open_files_limit, trust_fronts

logger = logging.getLogger("axon_grpc.edge")

APP = "axon_grpc.edge.app:app"
ACTIVE_REQUESTS = "http.ingress_http.downstream_rq_active"


def pyvoy_missing() -> str | None:
    """Why Envoy cannot serve here (one line), or None."""
    if sys.version_info < (3, 11):
        return f"pyvoy needs Python 3.11+ (this is {sys.version_info.major}.{sys.version_info.minor})"
    try:
        import pyvoy  # noqa: F401
    except ImportError:
        return (
            "pyvoy is not installed (pip install 'axon-grpc[edge]'; "
            "it ships Envoy for glibc Linux amd64/arm64 and macOS arm64)"
        )
    return None


class NotStarted(RuntimeError):
    """Envoy did not start (a port taken, a configuration refused); nothing serves."""


def port_taken(address: str, port: int) -> bool:
    """Whether ``address:port`` is bound by someone (a start that failed there may retry
    another port; one that failed on a free port failed for another reason)."""
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return True
    return False


def _edge_server_class() -> type:
    from pyvoy import PyvoyServer

    class EdgeServer(PyvoyServer):  # type: ignore[misc]
        """pyvoy's server with the edge limits added to its generated configuration."""

        def __init__(self, *args: Any, limits: EdgeLimits, trusted_fronts: tuple[str, ...] = (), **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.limits = limits
            self.trusted_fronts = list(trusted_fronts)

        def get_envoy_config(self) -> dict[str, Any]:
            return trust_fronts(apply_limits(super().get_envoy_config(), self.limits), self.trusted_fronts)

        @property
        def admin_address(self) -> str | None:
            return self._admin_address  # type: ignore[no-any-return]

    return EdgeServer


def build_servers(
    factory: str,
    *,
    address: str,
    port: int,
    workers: int = 1,
    tls: TlsFiles | None = None,
    limits: EdgeLimits | None = None,
    app_dir: str | None = None,
    drain_file: str | None = None,
    log_level: str | None = None,
    envoy_log_level: str = "error",
    app: str = APP,
    trusted_fronts: tuple[str, ...] = (),
) -> list[Any]:
    """One pyvoy server per worker, configured but not started."""
    server_class = _edge_server_class()
    tls = tls or TlsFiles()
    limits = limits or EdgeLimits()
    env = {FACTORY_ENV: factory}
    if port:
        env[PORT_ENV] = str(port)
    if drain_file:
        env[DRAIN_FILE_ENV] = drain_file
    if app_dir:
        env[APP_DIR_ENV] = app_dir
    if log_level:
        env[LOG_LEVEL_ENV] = log_level
    return [
        server_class(
            app,
            address=address,
            port=port,
            limits=limits,
            trusted_fronts=trusted_fronts,
            env=env,
            tls_key=Path(tls.key) if tls.key else None,
            tls_cert=Path(tls.cert) if tls.cert else None,
            tls_ca_cert=Path(tls.ca_cert) if tls.ca_cert else None,
            tls_enable_http3=False,
            tls_require_client_certificate=True,
            log_level=envoy_log_level,
            lifespan=True,
            stdout=None,
            stderr=None,
            additional_envoy_args=["--concurrency", str(limits.threads)],
        )
        for _ in range(workers)
    ]


def _admin(server: Any, path: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(f"http://{server.admin_address}{path}", method=method)
    with urllib.request.urlopen(request, timeout=2) as reply:
        return reply.read()  # type: ignore[no-any-return]


def active_requests(server: Any) -> int:
    """Requests in flight in one Envoy process (0 once it has stopped)."""
    if server.stopped or not server.admin_address:
        return 0
    try:
        stats = json.loads(_admin(server, f"/stats?format=json&filter=^{ACTIVE_REQUESTS}$"))
    except (OSError, ValueError):
        return 0
    return sum(int(s.get("value", 0)) for s in stats.get("stats", []) if s.get("name") == ACTIVE_REQUESTS)


async def drain(servers: list[Any], drain_file: str | None, grace: float, delay: float = 0.0) -> None:
    """NOT_SERVING, stop accepting, let calls in flight finish within ``grace``, stop.

    ``delay`` seconds pass between NOT_SERVING and closing the listeners, serving as
    before: a front's health checks take the host out of its pool in that time, so no
    call of its is sent to a closed listener.
    """
    if drain_file:
        Path(drain_file).touch()
    if delay > 0:
        await asyncio.sleep(delay)
    for server in servers:
        if not server.stopped and server.admin_address:
            try:
                await asyncio.to_thread(_admin, server, "/drain_listeners", "POST")
            except OSError as e:
                logger.warning("could not drain an Envoy process: %s", e)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        counts = await asyncio.gather(*(asyncio.to_thread(active_requests, s) for s in servers))
        if not any(counts):
            break
        await asyncio.sleep(0.05)
    await asyncio.gather(*(server.stop() for server in servers))


async def run(
    servers: list[Any],
    *,
    grace: float,
    drain_file: str | None,
    ready: Callable[[list[Any]], None] | None = None,
    drain_delay: float = 0.0,
) -> int:
    """Start ``servers``, serve until SIGTERM/SIGINT or until one exits, drain; the exit status.

    Raises :class:`NotStarted` when one of them did not start (all are stopped).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            for server in servers:
                await server.start()
        except Exception as e:
            await asyncio.gather(*(server.stop() for server in servers))
            raise NotStarted(f"Envoy did not start: {e}") from None
        if ready is not None:
            ready(servers)
        waits = [asyncio.ensure_future(server.wait()) for server in servers]
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([*waits, stopping], return_when=asyncio.FIRST_COMPLETED)
        died = not stop.is_set()
        await drain(servers, drain_file, grace, 0.0 if died else drain_delay)
        stopping.cancel()
        await asyncio.gather(*waits, stopping, return_exceptions=True)
        return 1 if died else 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


#: How many ports ``port=0`` tries when the one picked was taken before Envoy bound it.
PICK_ATTEMPTS = 5


def free_port(address: str) -> int:
    """A port free on ``address`` a moment ago: Envoy is given a port number, and every
    process of one edge needs the same; :func:`serve` picks again if it was taken since."""
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def serve(
    factory: str,
    *,
    address: str,
    port: int,
    workers: int = 1,
    grace: float = 5.0,
    tls: TlsFiles | None = None,
    limits: EdgeLimits | None = None,
    app_dir: str | None = None,
    log_level: str | None = None,
    print_config: bool = False,
    out: Callable[[str], Any] | None = None,
    app: str = APP,
    trusted_fronts: tuple[str, ...] = (),
    drain_delay: float = 0.0,
    on_port: Callable[[int], Any] | None = None,
) -> int:
    """Serve ``factory``'s axon on Envoy until SIGTERM/SIGINT; returns the exit status.

    ``port=0`` picks a free port, and another one (up to :data:`PICK_ATTEMPTS` in all) when
    Envoy found it taken; ``on_port(port)`` is called with each port before Envoy starts on
    it. Raises :class:`NotStarted` when Envoy did not start.
    """
    say = out or (lambda line: print(line, file=sys.stderr, flush=True))
    tls = tls or TlsFiles()
    tls.check()
    if workers < 1:
        raise ValueError("workers must be at least 1")
    pick = port == 0 and not print_config
    for attempt in range(1, PICK_ATTEMPTS + 1 if pick else 2):
        chosen = free_port(address) if pick else port
        if on_port is not None:
            on_port(chosen)
        try:
            return _serve_on(
                factory,
                address,
                chosen,
                workers,
                grace,
                tls,
                limits,
                app_dir,
                log_level,
                print_config,
                say,
                app,
                trusted_fronts,
                drain_delay,
            )
        except NotStarted:
            if not (pick and attempt < PICK_ATTEMPTS and port_taken(address, chosen)):
                raise
            say(f"axon-grpc: port {chosen} was taken before Envoy bound it; picking another")
    raise AssertionError("unreachable")  # pragma: no cover


def _serve_on(
    factory: str,
    address: str,
    port: int,
    workers: int,
    grace: float,
    tls: TlsFiles,
    limits: EdgeLimits | None,
    app_dir: str | None,
    log_level: str | None,
    print_config: bool,
    say: Callable[[str], Any],
    app: str,
    trusted_fronts: tuple[str, ...],
    drain_delay: float,
) -> int:
    raise_open_files_limit()
    with tempfile.TemporaryDirectory(prefix="axon-grpc-edge-") as folder:
        drain_file = os.path.join(folder, "draining")
        servers = build_servers(
            factory,
            address=address,
            port=port,
            workers=workers,
            tls=tls,
            limits=limits,
            app_dir=app_dir,
            drain_file=drain_file,
            log_level=log_level,
            app=app,
            trusted_fronts=trusted_fronts,
        )
        if print_config:
            print(json.dumps(servers[0].get_envoy_config(), indent=2))
            return 0

        def ready(started: list[Any]) -> None:
            first = started[0]
            scheme = "TLS" + (" + client certificates" if tls.ca_cert else "") if tls.enabled else "cleartext"
            say(
                f"axon-grpc: Envoy serving gRPC and legacy HTTP on {first.listener_address}:{first.listener_port} "
                f"({scheme}; {len(started)} process{'es' if len(started) > 1 else ''}, pid {os.getpid()})"
            )

        return asyncio.run(run(servers, grace=grace, drain_file=drain_file, ready=ready, drain_delay=drain_delay))
