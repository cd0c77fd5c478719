#!/usr/bin/env python3
"""Generate Python stubs from proto/ with grpcio-tools.

    python scripts/gen_protos.py [--out axon_grpc/_generated] [PROTO ...]

With no PROTO, compiles every .proto under proto/. Other languages use the same
files with their own protoc plugin; the command for each is printed with --print.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "axon_grpc" / "_generated"

OTHER_LANGUAGES = {
    "go": "protoc -I proto --go_out=. --go-grpc_out=. proto/axon/v1/axon.proto",
    "node": "npx grpc_tools_node_protoc -I proto --js_out=import_style=commonjs:out --grpc_out=grpc_js:out "
    "proto/axon/v1/axon.proto  (or load the .proto at run time with @grpc/proto-loader)",
    "rust": "tonic-build in build.rs: tonic_build::compile_protos(\"proto/axon/v1/axon.proto\")",
}


def generate(protos: list[Path], out: Path, include: list[Path]) -> None:
    from grpc_tools import protoc
    import grpc_tools

    out.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", *(f"-I{p}" for p in include), f"-I{well_known}",
            f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *map(str, protos)]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {', '.join(map(str, protos))}")
    for directory in [out, *(d for d in out.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protos", nargs="*", type=Path, help="files to compile (default: all under proto/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("-I", "--include", type=Path, action="append", default=None,
                        help="import root (default: proto/ and each file's own folder)")
    parser.add_argument("--print", action="store_true", help="print the protoc command for other languages")
    args = parser.parse_args(argv)
    if args.print:
        for language, command in OTHER_LANGUAGES.items():
            print(f"{language:5} {command}")
        return 0
    protos = args.protos or sorted(PROTO_DIR.rglob("*.proto"))
    outside = {p.resolve().parent for p in protos if PROTO_DIR not in p.resolve().parents}
    include = args.include or [PROTO_DIR, *sorted(outside)]
    generate(protos, args.out, include)
    print(f"generated {len(protos)} file(s) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
