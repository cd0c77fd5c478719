"""The commands `scripts/gen_protos.py --print` shows, run as printed on an emitted file.

Each language runs where this machine has its tools and is skipped with the reason
elsewhere (`make test` installs protoc and grpc_cpp_plugin where apt-get can).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from axon_grpc.cli import main

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "examples" / "node-client" / "node_modules"


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A folder holding out/axon/v1/axon_service.proto (with a streaming synapse) and the commands."""
    folder = tmp_path_factory.mktemp("clients")
    assert main(["proto", "tests.fixtures.synapses:Rich", "tests.test_streaming:Story", "-o", str(folder / "out")]) == 0
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--print"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    commands = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert set(commands) == {"go", "node", "rust", "cpp", "python"}
    return folder, commands


def run(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def needs(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


def test_python_command(printed) -> None:
    folder, commands = printed
    command = commands["python"].replace(
        "python scripts/gen_protos.py", f"{sys.executable} {ROOT}/scripts/gen_protos.py"
    )
    run(command, folder)
    assert (folder / "gen" / "python" / "axon" / "v1" / "axon_service_pb2_grpc.py").is_file()


def test_cpp_command_generates_code_that_compiles(printed) -> None:
    needs("protoc", "grpc_cpp_plugin", "g++", "pkg-config")
    folder, commands = printed
    run(commands["cpp"], folder)
    generated = folder / "gen" / "cpp" / "axon" / "v1"
    assert {p.name for p in generated.iterdir()} >= {"axon_service.pb.cc", "axon_service.grpc.pb.cc"}
    if subprocess.run(["pkg-config", "--exists", "grpc++", "protobuf"]).returncode != 0:
        pytest.skip("the grpc++/protobuf development files are not installed (libgrpc++-dev)")
    run(
        "g++ -std=c++17 -fsyntax-only -I gen/cpp $(pkg-config --cflags grpc++ protobuf) "
        "gen/cpp/axon/v1/axon_service.pb.cc gen/cpp/axon/v1/axon_service.grpc.pb.cc",
        folder,
    )


def test_node_command_loads_the_file(printed) -> None:
    needs("node")
    if not (NODE_MODULES / "@grpc" / "proto-loader").is_dir():
        pytest.skip("examples/node-client dependencies not installed (make node-deps)")
    folder, commands = printed
    run(commands["node"].split("  #")[0], folder, NODE_PATH=str(NODE_MODULES))


def test_go_command(printed) -> None:
    needs("protoc", "protoc-gen-go", "protoc-gen-go-grpc")
    folder, commands = printed
    run(commands["go"], folder)
    assert (folder / "gen" / "go" / "axon" / "v1" / "axon_service_grpc.pb.go").is_file()


def test_rust_command_names_the_emitted_file(printed) -> None:
    _, commands = printed
    assert 'compile_protos(&["out/axon/v1/axon_service.proto"], &["out"])' in commands["rust"]
    pytest.skip("tonic-build needs crates from crates.io, which this machine cannot reach")
