"""Command-line and environment configuration of an axon (``--axon.*``, ``BT_AXON_*``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from axon_grpc.auth.nonces import MEMORY_STORE_NAMES, REDIS_URL_SCHEMES
from axon_grpc.info import ip_version

DEFAULT_PORT = 8091
DEFAULT_IP = "[::]"
DEFAULT_MAX_WORKERS = 10
DEFAULT_NONCE_STORE_TIMEOUT = 0.5


def data_dir() -> Path:
    """The project's own data folder (``$AXON_GRPC_HOME``, default ``~/.axon-grpc``)."""
    return Path(os.environ.get("AXON_GRPC_HOME") or "~/.axon-grpc").expanduser()


class Config(dict):  # type: ignore[type-arg]
    """A nested dict with attribute access: ``config.axon.port``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> Config:
        """Turn dotted argparse destinations (``axon.port``) into nested sections."""
        root = cls()
        for dotted, value in vars(namespace).items():
            node = root
            *sections, leaf = dotted.split(".")
            for section in sections:
                node = node.setdefault(section, cls())
            node[leaf] = value
        return root


def _env(name: str, default: Any, kind: type = str) -> Any:
    raw = os.getenv(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None


#: ``--axon.*`` arguments: (name, type, environment variable, default, help).
_AXON_ARGS: tuple[tuple[str, type, str, Any, str], ...] = (
    ("port", int, "BT_AXON_PORT", DEFAULT_PORT, "The local port this axon binds to (default 8091)."),
    ("ip", str, "BT_AXON_IP", DEFAULT_IP, "The local ip this axon binds to (default [::], all interfaces)."),
    (
        "external_port",
        int,
        "BT_AXON_EXTERNAL_PORT",
        None,
        "The public port this axon broadcasts (default: the bind port).",
    ),
    ("external_ip", str, "BT_AXON_EXTERNAL_IP", None, "The public ip this axon broadcasts (default: a local address)."),
    ("http_port", int, "BT_AXON_HTTP_PORT", None, "Port of the HTTP bridge for legacy dendrites (default: no bridge)."),
    (
        "max_workers",
        int,
        "BT_AXON_MAX_WORKERS",
        DEFAULT_MAX_WORKERS,
        "Forwards running at once; sync ones on as many threads (default 10).",
    ),
    (
        "max_queue",
        int,
        "BT_AXON_MAX_QUEUE",
        None,
        "Requests that may wait for a worker; past it the lowest priority is refused with 503 "
        "(default 8 x max_workers).",
    ),
    (
        "nonce_store",
        str,
        "BT_AXON_NONCE_STORE",
        None,
        "Where accepted nonces live: 'memory' (one process) or redis://host:port/db, shared by several workers "
        "or hosts; redis+sentinel://s1:26379,s2:26379/SERVICE or redis+cluster://n1:6379,n2:6379 for highly "
        "available Redis, ?wait_replicas=N to accept a nonce only once N replicas hold it (default: memory).",
    ),
    (
        "nonce_store_timeout",
        float,
        "BT_AXON_NONCE_STORE_TIMEOUT",
        DEFAULT_NONCE_STORE_TIMEOUT,
        "Seconds a shared nonce store may take before a request is refused with 503 / UNAVAILABLE (default 0.5).",
    ),
    (
        "sessions",
        str,
        "BT_AXON_SESSIONS",
        "on",
        "Serve axon-session/1 session keys over gRPC (docs/SESSIONS.md): on or off (default on).",
    ),
    (
        "metrics_port",
        int,
        "BT_AXON_METRICS_PORT",
        None,
        "Port answering GET /metrics (Prometheus) on its own, e.g. when there is no HTTP port; the HTTP bridge "
        "answers GET /metrics too (default: none).",
    ),
    (
        "metrics_hotkeys",
        int,
        "BT_AXON_METRICS_HOTKEYS",
        None,
        "Also count the top N callers by hotkey (axon_caller_requests_total{hotkey}; default: no per-hotkey view).",
    ),
)

#: Short spellings of some ``--axon.*`` arguments (top-level parsers only).
_ALIASES = {"metrics_port": "--metrics-port", "metrics_hotkeys": "--metrics-hotkeys"}

#: ``--wallet.*`` arguments, in Bittensor's spelling.
_WALLET_ARGS: tuple[tuple[str, type, str, Any, str], ...] = (
    ("name", str, "BT_WALLET_NAME", None, "Wallet name under --wallet.path (default: a development hotkey)."),
    ("hotkey", str, "BT_WALLET_HOTKEY", "default", "Hotkey name inside the wallet (default: default)."),
    (
        "path",
        str,
        "BT_WALLET_PATH",
        "~/.bittensor/wallets",
        "Folder of Bittensor wallets (default: ~/.bittensor/wallets).",
    ),
)


def _add(
    parser: argparse.ArgumentParser,
    section: str,
    prefix: str | None,
    arguments: tuple[tuple[str, type, str, Any, str], ...],
) -> None:
    p = "" if prefix is None else prefix + "."
    for name, kind, env, default, text in arguments:
        try:
            flags = [f"--{p}{section}.{name}"]
            if prefix is None and section == "axon" and name in _ALIASES:
                flags.append(_ALIASES[name])
            parser.add_argument(*flags, type=kind, default=_env(env, default, kind), help=f"{text} Environment: {env}.")
        except argparse.ArgumentError:
            pass  # already added by another component sharing this parser


def add_args(parser: argparse.ArgumentParser, prefix: str | None = None) -> None:
    """Add the ``--axon.*`` arguments, with ``BT_AXON_*`` environment defaults."""
    _add(parser, "axon", prefix, _AXON_ARGS)


def add_wallet_args(parser: argparse.ArgumentParser, prefix: str | None = None) -> None:
    """``--wallet.name/hotkey/path`` in Bittensor's spelling, with ``BT_WALLET_*`` defaults."""
    _add(parser, "wallet", prefix, _WALLET_ARGS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="axon", description="Axon server settings.")
    add_args(parser)
    add_wallet_args(parser)
    return parser


def parse_config(args: Iterable[str] | None = None) -> Config:
    """Parse known ``--axon.*``/``--wallet.*`` arguments (``sys.argv`` when ``args`` is None)."""
    argv = sys.argv[1:] if args is None else list(args)
    namespace, _unknown = build_parser().parse_known_args(argv)
    return Config.from_namespace(namespace)


def _listen_port(port: Any) -> bool:
    """A port an axon may bind: 1025-65534, or 0 for one the system picks when it binds."""
    return int(port) == 0 or 1024 < int(port) < 65535


def check_config(config: Config) -> None:
    """Assert the ports are in range (1024, 65535), or 0 for a port the system picks at start (the
    external port excepted), and an external IP, if set, is an IP address."""
    axon = config.axon
    if axon.get("external_ip"):
        try:
            ip_version(axon.external_ip)
        except ValueError as e:
            raise AssertionError(f"External IP: {e}") from None
    assert _listen_port(axon.port), "Axon port must be in range [1024, 65535] (or 0: any free port)"
    assert axon.get("external_port") is None or 1024 < int(axon.external_port) < 65535, (
        "External port must be in range [1024, 65535]"
    )
    assert axon.get("http_port") is None or _listen_port(axon.http_port), (
        "HTTP port must be in range [1024, 65535] (or 0: any free port)"
    )
    assert axon.get("metrics_port") is None or _listen_port(axon.metrics_port), (
        "Metrics port must be in range [1024, 65535] (or 0: any free port)"
    )
    assert axon.get("metrics_hotkeys") is None or int(axon.metrics_hotkeys) >= 1, "metrics_hotkeys must be at least 1"
    store = (axon.get("nonce_store") or "").strip()
    assert store.lower() in MEMORY_STORE_NAMES or store.split("://", 1)[0] in REDIS_URL_SCHEMES, (
        "nonce_store must be 'memory' or a Redis URL (redis://host:port/db, redis+sentinel://..., redis+cluster://...)"
    )
    assert axon.get("nonce_store_timeout") is None or float(axon.nonce_store_timeout) > 0, (
        "nonce_store_timeout must be positive"
    )
    assert str(axon.get("sessions") or "on").lower() in ("on", "off"), "sessions must be 'on' or 'off'"
