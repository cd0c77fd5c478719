#!/usr/bin/env python3
"""Generate Python stubs from proto/ with grpcio-tools.

    python scripts/gen_protos.py [--out axon_grpc/_generated] [PROTO ...]

With no PROTO, compiles every .proto under proto/. Other languages use the same
files with their own protoc plugin; the command for each is printed with
`--print [PROTO]` (run from the folder holding out/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "axon_grpc" / "_generated"

#: The file `axon-grpc proto -o out/` writes, and its import root.
EMITTED = Path("out") / "axon" / "v1" / "axon_service.proto"


def other_languages(proto: Path, include: Path) -> dict[str, str]:
    """One shell command per language that generates (or, for Node, loads) client code.

    Go needs protoc-gen-go and protoc-gen-go-grpc on PATH; C++ protoc and grpc_cpp_plugin
    (Debian: protobuf-compiler protobuf-compiler-grpc libgrpc++-dev); Rust tonic-build.
    """
    return {
        "go": f"mkdir -p gen/go && protoc -I {include} --go_out=gen/go --go_opt=paths=source_relative "
        f"--go-grpc_out=gen/go --go-grpc_opt=paths=source_relative {proto}",
        "node": "node -e \"require('@grpc/grpc-js').loadPackageDefinition(require('@grpc/proto-loader')"
        f".loadSync('{proto}', {{keepCase: true, longs: String, defaults: true, oneofs: true}}))\""
        "  # @grpc/grpc-js loads the .proto at run time; no generated code",
        "rust": "cargo add tonic prost && cargo add --build tonic-build, then in build.rs: "
        f'tonic_build::configure().compile_protos(&["{proto}"], &["{include}"])?;',
        "cpp": f"mkdir -p gen/cpp && protoc -I {include} --cpp_out=gen/cpp --grpc_out=gen/cpp "
        f'--plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" {proto}',
        "python": f"python scripts/gen_protos.py {proto} -I {include} --out gen/python",
    }


def _include_of(proto: Path) -> Path:
    """The import root of a file named ``.../axon/v1/NAME.proto`` (its package path)."""
    return proto.parents[2] if len(proto.parts) > 3 else proto.parent


def generate(protos: list[Path], out: Path, include: list[Path]) -> None:
    import grpc_tools
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        *(f"-I{p}" for p in include),
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *map(str, protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {', '.join(map(str, protos))}")
    for directory in [out, *(d for d in out.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protos", nargs="*", type=Path, help="files to compile (default: all under proto/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument(
        "-I",
        "--include",
        type=Path,
        action="append",
        default=None,
        help="import root (default: proto/ and each file's own folder)",
    )
    parser.add_argument(
        "--print",
        action="store_true",
        help="print the command for Go, Node, Rust, C++ and Python for PROTO "
        f"(default {EMITTED}, what `axon-grpc proto -o out` writes)",
    )
    args = parser.parse_args(argv)
    if args.print:
        proto = args.protos[0] if args.protos else EMITTED
        include = args.include[0] if args.include else _include_of(proto)
        for language, command in other_languages(proto, include).items():
            print(f"{language:6} {command}")
        return 0
    protos = args.protos or sorted(PROTO_DIR.rglob("*.proto"))
    outside = {p.resolve().parent for p in protos if PROTO_DIR not in p.resolve().parents}
    include = args.include or [PROTO_DIR, *sorted(outside)]
    generate(protos, args.out, include)
    print(f"generated {len(protos)} file(s) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
