"""The ``axon-grpc`` command: its parser here; ``serve``, ``registry`` and ``call`` in :mod:`.commands`,
``proto`` in :mod:`.codegen`, ``demo`` in :mod:`.demo`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from axon_grpc import __version__, logs
from axon_grpc.cli.commands import add_commands
from axon_grpc.server.config import Config, add_args, add_wallet_args


def _demo(args: argparse.Namespace) -> int:
    from axon_grpc.cli.demo import run_demo, run_serve_demo

    in_process = args.in_process
    del args.in_process
    run = run_demo if in_process else run_serve_demo
    return run(Config.from_namespace(args), value=args.value)


def _proto(args: argparse.Namespace) -> int:
    from axon_grpc.cli.codegen import SchemaError, TargetError, file_options, write

    try:
        extra = dict(_option(text) for text in args.option)
        options = file_options(
            go_package=args.go_package, java_package=args.java_package, csharp_namespace=args.csharp_namespace, **extra
        )
        path = write(args.targets, Path(args.out), options)
    except (SchemaError, TargetError) as e:
        print(f"axon-grpc proto: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _option(text: str) -> tuple[str, str | bool | None]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--option takes NAME=VALUE, not {text!r}")
    return name, {"true": True, "false": False}.get(value, value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="axon-grpc",
        description="A gRPC-fronted Bittensor Axon.",
    )
    parser.add_argument("--version", action="version", version=f"axon-grpc {__version__}")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING).")
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=os.getenv(logs.FORMAT_ENV) or "text",
        help="text (default: human-readable lines) or json (one JSON object per line: time, level, "
        "synapse, caller_hotkey, status, duration_ms, error_id; never bodies, headers or "
        f"signatures). Environment: {logs.FORMAT_ENV}.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="Serve the example axon as in production (axon-grpc serve on Envoy) and call it.",
        description="Start `axon-grpc serve` (Envoy, one port) with the example Dummy synapse on 127.0.0.1 and a "
        "port the system picks unless told otherwise, then call it once with the Python Dendrite over gRPC, once "
        "as a legacy SDK 10.5 dendrite over HTTP, scrape its /metrics, and print each answer. Where Envoy cannot "
        "run (pyvoy missing), says why and shows the in-process servers instead.",
    )
    add_args(demo)
    add_wallet_args(demo)
    demo.set_defaults(
        **{"axon.ip": os.getenv("BT_AXON_IP") or "127.0.0.1", "axon.port": int(os.getenv("BT_AXON_PORT") or 0)},
        func=_demo,
    )
    demo.add_argument("--value", type=int, default=21, help="The input to send (default 21).")
    demo.add_argument(
        "--in-process",
        action="store_true",
        help="The development servers instead (axon.start(): grpc.aio and uvicorn on two ports).",
    )

    proto = sub.add_parser(
        "proto",
        help="Write the .proto of synapse classes, for clients in other languages.",
        description="Write OUT/axon/v1/axon_service.proto: the axon.v1.Axon service with one method per "
        "synapse, its messages, and the metadata/auth contract as comments. Deterministic: the same "
        "classes give byte-identical output, and appending a field keeps earlier field numbers.",
    )
    proto.add_argument(
        "targets",
        nargs="+",
        metavar="MODULE[:CLASS]",
        help="a Synapse subclass (my_module:MySynapse), or a module for all it defines",
    )
    proto.add_argument("-o", "--out", default=".", help="output folder (default: the current folder)")
    proto.add_argument(
        "--go-package",
        default="axon/v1;axonv1",
        help="option go_package (default %(default)s; e.g. example.com/me/client/gen/axon/v1;axonv1)",
    )
    proto.add_argument("--java-package", default="axon.v1", help="option java_package (default %(default)s)")
    proto.add_argument("--csharp-namespace", default="Axon.V1", help="option csharp_namespace (default %(default)s)")
    proto.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other file option (objc_class_prefix=XYZ, java_multiple_files=false); "
        "an empty VALUE leaves the option out. Defaults also set java_multiple_files, "
        "php_namespace, ruby_package and objc_class_prefix",
    )
    proto.set_defaults(func=_proto)
    add_commands(sub)  # serve (several workers), registry list, call
    from axon_grpc.edge.front import add_front_command

    add_front_command(sub)  # Envoy over several hosts (docs/FLEET.md)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    os.environ[logs.FORMAT_ENV] = args.log_format  # worker processes log alike
    func = args.func
    namespace = argparse.Namespace(
        **{k: v for k, v in vars(args).items() if k not in ("func", "command", "log_level", "log_format")}
    )
    try:
        return int(func(namespace))
    except (AssertionError, OSError, ValueError) as e:
        print(f"axon-grpc: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
