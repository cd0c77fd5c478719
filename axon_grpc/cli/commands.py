"""The ``serve``, ``registry`` and ``call`` commands of ``axon-grpc`` (added by :mod:`axon_grpc.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from typing import Any

from axon_grpc.server.config import Config, add_args, add_wallet_args

#: ``--axon.*`` / ``--wallet.*`` settings handed to the workers as environment variables.
_ENV_SECTIONS = {"axon": "BT_AXON_", "wallet": "BT_WALLET_"}


def export_settings(args: argparse.Namespace) -> dict[str, str]:
    """Set ``BT_AXON_*`` / ``BT_WALLET_*`` from the parsed options; returns what was set.

    The factory builds its Axon with the default configuration, which reads these
    variables, so ``--axon.port`` or ``--axon.nonce_store`` reach every worker.
    """
    exported: dict[str, str] = {}
    for dotted, value in vars(args).items():
        section, _, leaf = dotted.partition(".")
        if section in _ENV_SECTIONS and leaf and value is not None:
            exported[_ENV_SECTIONS[section] + leaf.upper()] = str(value)
    os.environ.update(exported)
    return exported


def _serve(args: argparse.Namespace) -> int:
    from axon_grpc.server import workers

    app_dir = os.path.abspath(args.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    export_settings(args)
    if args.server == "envoy":
        from axon_grpc.edge import serve as edge

        missing = edge.pyvoy_missing()
        if missing is None:
            return _serve_envoy(args, app_dir)
        print(f"axon-grpc: {missing}; serving with grpcio instead (--server grpcio)", file=sys.stderr, flush=True)
    if args.tls_cert or args.tls_ca_cert:
        raise ValueError("--tls-cert/--tls-key/--tls-ca-cert need --server envoy")
    if args.trusted_front:
        raise ValueError("--trusted-front needs --server envoy")
    return workers.serve(args.app, workers=args.workers, grace=args.grace, log_level=args.worker_log_level)


def _serve_envoy(args: argparse.Namespace, app_dir: str) -> int:
    from axon_grpc.edge import serve as edge
    from axon_grpc.edge.app import use_edge_port
    from axon_grpc.edge.config import TlsFiles, limits_from_args, parse_cidr
    from axon_grpc.server import workers

    tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_ca_cert)
    tls.check()
    for cidr in args.trusted_front:
        parse_cidr(cidr)  # a typo fails here, in one line, not inside Envoy
    address = str(getattr(args, "axon.ip")).strip("[]") or "::"

    def on_port(port: int) -> None:
        """One port for every process, known to the axon (``--axon.port 0``: the one picked);
        the factory's errors and a missing shared store, here and in one line."""
        os.environ["BT_AXON_PORT"] = str(port)
        axon = workers.build(args.app)
        workers.require_shared_store(axon, args.workers)
        use_edge_port(axon, port)
        info = axon.info()
        print(
            f"axon-grpc: hotkey {info.hotkey}; advertises {info.ip_str()} (axon.info(), axon.serve(netuid))",
            file=sys.stderr,
            flush=True,
        )

    try:
        return edge.serve(
            args.app,
            address=address,
            port=int(getattr(args, "axon.port")),
            workers=args.workers,
            grace=args.grace,
            tls=tls,
            limits=limits_from_args(args),
            app_dir=app_dir,
            log_level=args.worker_log_level,
            print_config=args.print_envoy_config,
            trusted_fronts=tuple(args.trusted_front),
            drain_delay=args.drain_delay,
            on_port=None if args.print_envoy_config else on_port,
        )
    except edge.NotStarted as e:
        print(f"axon-grpc: {e}", file=sys.stderr, flush=True)
        return 1


def _registry(args: argparse.Namespace) -> int:
    from axon_grpc.registry import LocalRegistry

    registry = LocalRegistry(args.registry)
    entries = registry.entries(args.netuid)
    if args.json:
        for entry in entries:
            print(json.dumps({"netuid": entry.netuid, **vars(entry.info), "updated_at": entry.updated_at}))
        return 0
    if not entries:
        where = f" on netuid {args.netuid}" if args.netuid is not None else ""
        print(f"no axons registered{where} in {registry.path}", file=sys.stderr)
        return 0
    print(f"{'NETUID':>6}  {'HOTKEY':<48}  {'ADDRESS':<28}  VERSION")
    for entry in entries:
        info = entry.info
        print(f"{entry.netuid:>6}  {info.hotkey:<48}  {info.ip_str():<28}  {info.version}")
    return 0


def load_synapse_class(target: str) -> type[Any]:
    """The Synapse subclass ``module:Class`` names."""
    from axon_grpc.synapse import Synapse

    module_name, sep, name = target.partition(":")
    if not sep or not name:
        raise ValueError(f"expected MODULE:CLASS (like my_app:Dummy), got {target!r}")
    cls = getattr(importlib.import_module(module_name), name, None)
    if not (isinstance(cls, type) and issubclass(cls, Synapse)):
        raise ValueError(f"{target} is not a Synapse subclass")
    return cls


def _call(args: argparse.Namespace) -> int:
    from axon_grpc.client.dendrite import Dendrite
    from axon_grpc.registry import LocalRegistry
    from axon_grpc.server.axon import default_wallet
    from axon_grpc.synapse import Synapse

    app_dir = os.path.abspath(args.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    cls = load_synapse_class(args.synapse)
    try:
        fields = json.loads(args.fields)
    except json.JSONDecodeError as e:
        raise ValueError(f"--fields is not JSON: {e}") from None
    if not isinstance(fields, dict):
        raise ValueError("--fields must be a JSON object")
    synapse = cls(**fields)
    registry = LocalRegistry(args.registry)
    axons = registry.axons(args.netuid)
    if not axons:
        print(f"no axons registered on netuid {args.netuid} in {registry.path}", file=sys.stderr)
        return 1
    config = Config.from_namespace(args)
    wallet = default_wallet(config) if (config.get("wallet") or {}).get("name") else None
    auth = args.auth

    async def run() -> list[Any]:
        async with Dendrite(wallet, auth=auth) as dendrite:
            return list(await dendrite.forward(axons, synapse, timeout=args.timeout, deserialize=False))

    failures = 0
    for info, result in zip(axons, asyncio.run(run())):
        d = result.dendrite
        values = {k: v for k, v in result.model_dump(mode="json").items() if k not in Synapse.model_fields}
        print(f"{info.hotkey} {info.ip_str()} {d.status_code} {d.status_message!r} {json.dumps(values)}")
        failures += d.status_code != 200
    return 1 if failures else 0


def add_commands(sub: Any) -> None:
    """Add ``serve``, ``registry list`` and ``call`` to the ``axon-grpc`` sub-parsers."""
    serve = sub.add_parser(
        "serve",
        help="Serve an application's axon, optionally with several worker processes on one port.",
        description="Import MODULE, call FUNCTION() (it returns an unstarted Axon) and serve it until SIGTERM/"
        "SIGINT. With --workers N > 1, N processes share the gRPC port (and the HTTP bridge port) with "
        "SO_REUSEPORT; they must share replay state, so --axon.nonce_store redis://HOST:PORT/DB is required "
        "(the command refuses to start with the in-memory store). --axon.* and --wallet.* options reach the "
        "factory's Axon as BT_AXON_* / BT_WALLET_* environment variables. Fail closed: while Redis is "
        "unreachable or slower than --axon.nonce_store_timeout, requests get UNAVAILABLE / 503.",
    )
    serve.add_argument("app", metavar="MODULE:FUNCTION", help="the axon factory, like my_app:build_axon")
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.getenv("AXON_GRPC_WORKERS") or 1),
        help="worker processes sharing the port (env AXON_GRPC_WORKERS; default 1: in-process)",
    )
    serve.add_argument(
        "--grace", type=float, default=5.0, help="seconds calls in flight get to finish on shutdown (default 5)"
    )
    serve.add_argument("--app-dir", default=".", help="folder to import MODULE from (default: the current one)")
    serve.add_argument("--worker-log-level", default=None, help="logging level inside the workers (default: none)")
    serve.add_argument(
        "--server",
        choices=("envoy", "grpcio"),
        default=os.getenv("AXON_GRPC_SERVER") or "envoy",
        help="envoy (default; pyvoy: gRPC and legacy HTTP on one port, TLS, edge limits) or grpcio "
        "(the in-process servers, also the fallback where pyvoy is missing)",
    )
    serve.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve TLS on the port (envoy)")
    serve.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert (envoy)")
    serve.add_argument(
        "--tls-ca-cert", default=None, help="PEM CA bundle: require client certificates signed by it (mTLS; envoy)"
    )
    serve.add_argument(
        "--print-envoy-config", action="store_true", help="print the Envoy configuration (JSON) and exit (envoy)"
    )
    serve.add_argument(
        "--trusted-front",
        action="append",
        default=[],
        metavar="CIDR",
        help="a front (axon-grpc front) at these addresses passes the caller's address in x-forwarded-for: "
        "trusted from these peers only, ignored from any other (repeatable; envoy)",
    )
    serve.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        help="seconds between NOT_SERVING and closing the listener on SIGTERM, serving as before, so a "
        "front's health checks take the host out first (behind a front: at least its health-check "
        "interval plus timeout; default 0)",
    )
    from axon_grpc.edge.config import add_edge_args

    add_edge_args(serve)
    add_args(serve)
    add_wallet_args(serve)
    serve.set_defaults(func=_serve)

    registry = sub.add_parser(
        "registry",
        help="Show the local registry of served axons.",
        description="The local registry (a SQLite file; default $AXON_GRPC_REGISTRY or "
        "$AXON_GRPC_HOME/registry.sqlite) records the AxonInfo of every axon served with "
        "axon.serve(netuid) and no subtensor, per netuid and hotkey.",
    )
    registry_sub = registry.add_subparsers(dest="registry_command", metavar="ACTION")
    registry_sub.required = True
    listing = registry_sub.add_parser(
        "list", help="List the registered axons.", description="List the registered axons, by netuid then hotkey."
    )
    listing.add_argument("--netuid", type=int, default=None, help="only this subnet")
    listing.add_argument("--registry", default=None, help="the registry file (default: the local registry)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_registry)

    call = sub.add_parser(
        "call",
        help="Call every axon registered on a subnet with the Python Dendrite.",
        description="Build SYNAPSE from --fields, send it to every axon of --netuid in the local registry, "
        "and print one line per axon: hotkey, address, status code, status message, and the response's "
        "fields as JSON. Exit status 0 when every axon answered 200.",
    )
    call.add_argument("synapse", metavar="MODULE:CLASS", help="the Synapse subclass, like my_app:Dummy")
    call.add_argument("--netuid", type=int, required=True, help="the subnet whose axons to call")
    call.add_argument("--fields", default="{}", help="the request fields as a JSON object, like '{\"input\": 3}'")
    call.add_argument("--timeout", type=float, default=12.0, help="seconds per call (default 12)")
    call.add_argument("--auth", choices=("legacy", "btauth"), default="legacy", help="signing scheme (default legacy)")
    call.add_argument("--registry", default=None, help="the registry file (default: the local registry)")
    call.add_argument("--app-dir", default=".", help="folder to import MODULE from (default: the current one)")
    add_wallet_args(call)
    call.set_defaults(func=_call)
