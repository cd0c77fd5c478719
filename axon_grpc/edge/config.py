"""Envoy's limits and TLS for the edge, with the values Envoy recommends for an edge proxy.

Source: Envoy's "Configuring Envoy as an edge proxy" best-practices page
(envoyproxy.io/docs/envoy/latest/configuration/best_practices/edge). From it:
listener buffer limit 32 KiB, HTTP/2 at most 100 concurrent streams per connection,
64 KiB initial stream window and 1 MiB connection window, ``use_remote_address``,
stream idle and request timeouts of 300 s, a global connection limit (50,000), and an
overload manager on a fixed heap (shrink the heap at 95 %, stop accepting requests at
98 %). Admin is bound to 127.0.0.1 on a random port (pyvoy's choice), as the page asks.

Where the axon differs from the page, on purpose:

- ``headers_with_underscores_action`` stays ALLOW (the page says REJECT_REQUEST): the
  Bittensor protocol's own headers are ``bt_header_*``, on both protocols.
- ``idle_timeout`` 300 s (the page: 3,600 s): an axon's callers are validators that
  call every few seconds to minutes, and an idle connection costs a descriptor.
- ``request_headers_timeout`` 10 s (not on the page): a request head must be complete
  within 10 s of its first byte, which closes slow-header connections.
- Request headers at most 32 KiB and 100 headers (Envoy's defaults: 60 KiB, 100), the
  limits the in-process HTTP bridge applies; past them Envoy answers 431.
- The connection limit is also kept under the process's file-descriptor limit.
- Premature stream resets: Envoy's own defence (since 1.27.1) closes an HTTP/2
  connection once at least half of its streams, past the first 500, were reset before
  they lived 1 s; the two runtime values are set explicitly so they show in the config.
"""

from __future__ import annotations

import argparse
import os
import resource
from dataclasses import dataclass, fields
from typing import Any

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

#: Descriptors kept free for Envoy's own files, the admin listener and the app.
FD_RESERVE = 256

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def _default_heap_bytes() -> int:
    """The page's 2 GiB, or half the machine's memory when that is less."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 * GIB
    return min(2 * GIB, total // 2)


@dataclass
class EdgeLimits:
    """Envoy's limits for one edge process; every field has a ``--edge.*`` flag."""

    #: Seconds a request head may take from its first byte (else the connection closes).
    request_headers_timeout_s: float = 10.0
    #: Seconds a connection may stay without any stream before Envoy closes it.
    idle_timeout_s: float = 300.0
    #: Seconds a stream may see no activity (edge page: 300).
    stream_idle_timeout_s: float = 300.0
    #: Seconds to receive a whole request (edge page: 300); calls' own deadlines are shorter.
    request_timeout_s: float = 300.0
    #: Downstream connections over all listeners (edge page: 50,000; kept under the fd limit).
    max_connections: int = 50_000
    #: Bytes buffered per connection before flow control pushes back (edge page: 32 KiB).
    per_connection_buffer_bytes: int = 32 * KIB
    #: Request header block size and count (431 past them).
    max_request_headers_kb: int = 32
    max_headers_count: int = 100
    #: HTTP/2 settings (edge page: 100 streams, 64 KiB stream window, 1 MiB connection window).
    http2_max_concurrent_streams: int = 100
    http2_initial_stream_window_bytes: int = 64 * KIB
    http2_initial_connection_window_bytes: int = 1 * MIB
    #: Premature-reset defence: streams counted before judging, and the "premature" lifetime.
    premature_reset_total_stream_count: int = 500
    premature_reset_min_stream_lifetime_s: int = 1
    #: Overload manager heap (edge page: 2 GiB, to tune; here at most half the memory).
    max_heap_bytes: int = 0
    #: Envoy worker threads per process (``--concurrency``). One: the application's Python
    #: runs on one thread anyway, and a second Envoy thread only adds hand-offs (about 10%
    #: more CPU per request measured here); use ``--workers N`` for more cores.
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.max_heap_bytes:
            self.max_heap_bytes = _default_heap_bytes()

    def connection_limit(self) -> int:
        """``max_connections``, lowered to fit the open-files limit Envoy will inherit."""
        return connection_budget(self.max_connections)


def connection_budget(wanted: int, servers: int = 1) -> int:
    """``wanted`` connections, lowered so that ``servers`` listeners each holding that many
    fit in this process's open-files limit with :data:`FD_RESERVE` descriptors kept free."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, max(16, (soft - FD_RESERVE) // servers))


def raise_open_files_limit() -> int:
    """Raise this process's soft open-files limit to the hard one (Envoy inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _hcm_settings(limits: EdgeLimits) -> dict[str, Any]:
    return {
        "use_remote_address": True,
        "request_headers_timeout": _seconds(limits.request_headers_timeout_s),
        "stream_idle_timeout": _seconds(limits.stream_idle_timeout_s),
        "request_timeout": _seconds(limits.request_timeout_s),
        "max_request_headers_kb": limits.max_request_headers_kb,
        "common_http_protocol_options": {
            "idle_timeout": _seconds(limits.idle_timeout_s),
            "max_headers_count": limits.max_headers_count,
            "headers_with_underscores_action": "ALLOW",
        },
        "http2_protocol_options": {
            "max_concurrent_streams": limits.http2_max_concurrent_streams,
            "initial_stream_window_size": limits.http2_initial_stream_window_bytes,
            "initial_connection_window_size": limits.http2_initial_connection_window_bytes,
        },
    }


def _overload_manager(limits: EdgeLimits) -> dict[str, Any]:
    monitors = "envoy.resource_monitors"
    return {
        "refresh_interval": "0.25s",
        "resource_monitors": [
            {
                "name": f"{monitors}.fixed_heap",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig",
                    "max_heap_size_bytes": limits.max_heap_bytes,
                },
            },
            {
                "name": f"{monitors}.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                    "downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": limits.connection_limit(),
                },
            },
        ],
        "actions": [
            {
                "name": "envoy.overload_actions.shrink_heap",
                "triggers": [{"name": f"{monitors}.fixed_heap", "threshold": {"value": 0.95}}],
            },
            {
                "name": "envoy.overload_actions.stop_accepting_requests",
                "triggers": [{"name": f"{monitors}.fixed_heap", "threshold": {"value": 0.98}}],
            },
        ],
    }


def apply_limits(config: dict[str, Any], limits: EdgeLimits) -> dict[str, Any]:
    """Add the edge limits to a pyvoy-generated Envoy bootstrap ``config`` (in place)."""
    for listener in config["static_resources"]["listeners"]:
        socket_address = listener["address"]["socket_address"]
        if socket_address.get("protocol") == "UDP":
            continue
        if socket_address.get("address") == "::":
            socket_address["ipv4_compat"] = True  # [::] takes IPv4 clients too, as the in-process servers do
        listener["per_connection_buffer_limit_bytes"] = limits.per_connection_buffer_bytes
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                typed = network_filter.get("typed_config", {})
                if typed.get("@type") == HCM_TYPE:
                    for key, value in _hcm_settings(limits).items():
                        if isinstance(value, dict):
                            typed.setdefault(key, {}).update(value)
                        else:
                            typed[key] = value
    config["overload_manager"] = _overload_manager(limits)
    config["layered_runtime"] = {
        "layers": [
            {
                "name": "edge_limits",
                "static_layer": {
                    "overload.premature_reset_total_stream_count": limits.premature_reset_total_stream_count,
                    "overload.premature_reset_min_stream_lifetime_seconds": (
                        limits.premature_reset_min_stream_lifetime_s
                    ),
                },
            }
        ]
    }
    return config


def parse_cidr(text: str) -> dict[str, Any]:
    """Envoy's ``CidrRange`` of ``10.0.0.2/32`` (a bare address is one host); ``ValueError`` otherwise."""
    import ipaddress

    network = ipaddress.ip_network(text.strip(), strict=False)
    return {"address_prefix": str(network.network_address), "prefix_len": network.prefixlen}


def trust_fronts(config: dict[str, Any], cidrs: list[str]) -> dict[str, Any]:
    """Take the caller's address from ``x-forwarded-for`` when the peer is a front in ``cidrs``.

    Envoy's XFF original-IP detection (``xff_trusted_cidrs``) walks the header from the
    right past trusted addresses: the first untrusted one is the caller, and becomes the
    request's remote address (the ASGI ``client``, so ``dendrite.ip`` and every per-IP
    decision). A peer outside ``cidrs`` is its own address: its header is ignored. The
    detection replaces ``use_remote_address`` (Envoy takes one or the other).
    """
    ranges = [parse_cidr(c) for c in cidrs]
    if not ranges:
        return config
    detection = {
        "name": "envoy.http.original_ip_detection.xff",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.http.original_ip_detection.xff.v3.XffConfig",
            "xff_trusted_cidrs": {"cidrs": ranges},
        },
    }
    for listener in config["static_resources"]["listeners"]:
        for chain in listener.get("filter_chains", []):
            for network_filter in chain["filters"]:
                typed = network_filter.get("typed_config", {})
                if typed.get("@type") == HCM_TYPE:
                    typed["use_remote_address"] = False
                    typed["original_ip_detection_extensions"] = [detection]
    return config


@dataclass
class TlsFiles:
    """PEM files: the server's certificate and key, and the CA that client certificates need."""

    cert: str | None = None
    key: str | None = None
    ca_cert: str | None = None

    def check(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.ca_cert and not self.cert:
            raise ValueError("--tls-ca-cert (client certificates) needs --tls-cert and --tls-key")
        for path in (self.cert, self.key, self.ca_cert):
            if path and not os.path.isfile(path):
                raise ValueError(f"no such file: {path}")

    @property
    def enabled(self) -> bool:
        return bool(self.cert)


def add_edge_args(parser: argparse.ArgumentParser) -> None:
    """``--edge.*`` flags, one per :class:`EdgeLimits` field (default shown in the help)."""
    group = parser.add_argument_group("Envoy edge limits (--server envoy)")
    defaults = EdgeLimits()
    for field in fields(EdgeLimits):
        kind = float if field.type in ("float", float) else int
        group.add_argument(
            f"--edge.{field.name}",
            dest=f"edge.{field.name}",
            type=kind,
            default=None,
            help=f"default {getattr(defaults, field.name)}",
        )


def limits_from_args(args: argparse.Namespace) -> EdgeLimits:
    given = {f.name: getattr(args, f"edge.{f.name}", None) for f in fields(EdgeLimits)}
    return EdgeLimits(**{k: v for k, v in given.items() if v is not None})
