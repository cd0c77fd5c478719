"""The commands `scripts/gen_protos.py --print` shows, run as printed on an emitted file.

Each language runs where this machine has its tools and is skipped with the reason
elsewhere (`make test` installs protoc and grpc_cpp_plugin where apt-get can).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from axon_grpc.cli import main
from axon_grpc.testing import serve_axon

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "examples" / "node-client" / "node_modules"
#: Debian's Go packages (golang-google-grpc-dev), built in GOPATH mode: no module download.
GO_PATH = Path("/usr/share/gocode/src")


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


async def test_a_go_client_built_from_the_generated_code_calls_the_axon(printed) -> None:
    """tests/fixtures/go/pingclient.go calls the ping method with no credentials; the axon
    answers it in gRPC (the Go stub speaks the axon's contract)."""
    needs("protoc", "protoc-gen-go", "protoc-gen-go-grpc", "go")
    if not (GO_PATH / "google.golang.org" / "grpc").is_dir():
        pytest.skip(f"grpc-go sources not in {GO_PATH} (apt-get install golang-google-grpc-dev)")
    folder, commands = printed
    run(commands["go"], folder)
    tree = folder / "gopath" / "src"
    shutil.copytree(folder / "gen" / "go" / "axon", tree / "axon", dirs_exist_ok=True)
    (tree / "pingclient").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "go" / "pingclient.go", tree / "pingclient" / "main.go")
    go = {"GO111MODULE": "off", "GOFLAGS": "", "GOPATH": f"{folder / 'gopath'}:{GO_PATH.parent}"}
    go["GOCACHE"] = str(folder / "gocache")
    await asyncio.to_thread(run, "go build -o pingclient pingclient", folder, **go)
    async with serve_axon() as harness:
        done = await asyncio.to_thread(run, f"./pingclient 127.0.0.1:{harness.axon.port}", folder)
    code, message = done.stdout.strip().split("|", 1)
    assert code == "Unauthenticated"
    assert message == "Not Verified with error: No SS58 formatted address or public key provided. (rule R3)"


def test_rust_command_names_the_emitted_file(printed) -> None:
    _, commands = printed
    assert 'compile_protos(&["out/axon/v1/axon_service.proto"], &["out"])' in commands["rust"]
    pytest.skip("tonic-build needs crates from crates.io, which this machine cannot reach")
