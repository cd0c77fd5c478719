"""Command-line and environment configuration of an axon (``--axon.*``, ``BT_AXON_*``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Iterable

DEFAULT_PORT = 8091
DEFAULT_IP = "[::]"
DEFAULT_MAX_WORKERS = 10
DEFAULT_NONCE_STORE_TIMEOUT = 0.5


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
        raise SystemExit(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from None


def add_args(parser: argparse.ArgumentParser, prefix: str | None = None) -> None:
    """Add the ``--axon.*`` arguments, with ``BT_AXON_*`` environment defaults."""
    p = "" if prefix is None else prefix + "."
    try:
        parser.add_argument(
            f"--{p}axon.port", type=int, default=_env("BT_AXON_PORT", DEFAULT_PORT, int),
            help="The local port this axon binds to (env BT_AXON_PORT; default 8091).",
        )
        parser.add_argument(
            f"--{p}axon.ip", type=str, default=_env("BT_AXON_IP", DEFAULT_IP),
            help="The local ip this axon binds to (env BT_AXON_IP; default [::], all interfaces).",
        )
        parser.add_argument(
            f"--{p}axon.external_port", type=int, default=_env("BT_AXON_EXTERNAL_PORT", None, int),
            help="The public port this axon broadcasts (env BT_AXON_EXTERNAL_PORT; default: the bind port).",
        )
        parser.add_argument(
            f"--{p}axon.external_ip", type=str, default=_env("BT_AXON_EXTERNAL_IP", None),
            help="The public ip this axon broadcasts (env BT_AXON_EXTERNAL_IP; default: a local address).",
        )
        parser.add_argument(
            f"--{p}axon.http_port", type=int, default=_env("BT_AXON_HTTP_PORT", None, int),
            help="Port of the HTTP bridge for legacy dendrites (env BT_AXON_HTTP_PORT; default: no bridge).",
        )
        parser.add_argument(
            f"--{p}axon.max_workers", type=int, default=_env("BT_AXON_MAX_WORKERS", DEFAULT_MAX_WORKERS, int),
            help="Threads running synchronous forwards (env BT_AXON_MAX_WORKERS; default 10).",
        )
        parser.add_argument(
            f"--{p}axon.max_queue", type=int, default=_env("BT_AXON_MAX_QUEUE", None, int),
            help="Requests that may wait for a worker; past it the lowest priority is refused with 503 "
            "(env BT_AXON_MAX_QUEUE; default 8 x max_workers).",
        )
        parser.add_argument(
            f"--{p}axon.nonce_store", type=str, default=_env("BT_AXON_NONCE_STORE", None),
            help="Where accepted nonces live: 'memory' (one process) or redis://host:port/db, shared by "
            "several workers or hosts (env BT_AXON_NONCE_STORE; default: memory).",
        )
        parser.add_argument(
            f"--{p}axon.nonce_store_timeout", type=float,
            default=_env("BT_AXON_NONCE_STORE_TIMEOUT", DEFAULT_NONCE_STORE_TIMEOUT, float),
            help="Seconds a shared nonce store may take before a request is refused with 503 / UNAVAILABLE "
            "(env BT_AXON_NONCE_STORE_TIMEOUT; default 0.5).",
        )
    except argparse.ArgumentError:
        # Already added by another component sharing this parser.
        pass


def add_wallet_args(parser: argparse.ArgumentParser, prefix: str | None = None) -> None:
    """``--wallet.name/hotkey/path`` in Bittensor's spelling, with ``BT_WALLET_*`` defaults."""
    p = "" if prefix is None else prefix + "."
    try:
        parser.add_argument(f"--{p}wallet.name", default=_env("BT_WALLET_NAME", None),
                            help="Wallet name under --wallet.path (default: a development hotkey).")
        parser.add_argument(f"--{p}wallet.hotkey", default=_env("BT_WALLET_HOTKEY", "default"),
                            help="Hotkey name inside the wallet (default: default).")
        parser.add_argument(f"--{p}wallet.path", default=_env("BT_WALLET_PATH", "~/.bittensor/wallets"),
                            help="Folder of Bittensor wallets (default: ~/.bittensor/wallets).")
    except argparse.ArgumentError:
        pass


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


def check_config(config: Config) -> None:
    """Assert the ports are in range (1024, 65535)."""
    axon = config.axon
    assert 1024 < int(axon.port) < 65535, "Axon port must be in range [1024, 65535]"
    assert axon.get("external_port") is None or 1024 < int(axon.external_port) < 65535, (
        "External port must be in range [1024, 65535]"
    )
    assert axon.get("http_port") is None or 1024 < int(axon.http_port) < 65535, (
        "HTTP port must be in range [1024, 65535]"
    )
    store = (axon.get("nonce_store") or "").strip()
    assert store.lower() in ("", "memory") or store.split("://", 1)[0] in ("redis", "rediss", "unix"), (
        "nonce_store must be 'memory' or a Redis URL (redis://host:port/db)"
    )
    assert axon.get("nonce_store_timeout") is None or float(axon.nonce_store_timeout) > 0, (
        "nonce_store_timeout must be positive"
    )
