"""`axon-grpc proto` and scripts/: emitted .proto files, protoc stubs, determinism, refusals."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from axon_grpc.cli import main
from axon_grpc.schema.contract import CONTRACT

ROOT = Path(__file__).resolve().parent.parent


def emit(tmp_path: Path, *targets: str, capsys: pytest.CaptureFixture[str] | None = None) -> Path:
    assert main(["proto", *targets, "-o", str(tmp_path)]) == 0
    return tmp_path / "axon" / "v1" / "axon_service.proto"


def test_emitted_file_has_service_messages_and_contract(tmp_path: Path) -> None:
    text = emit(tmp_path, "tests.fixtures.synapses:Rich", "tests.fixtures.synapses:LooseOptIn").read_text()
    assert "service Axon {" in text
    assert "rpc Rich(axon.v1.Rich) returns (axon.v1.Rich);" in text
    assert "rpc LooseOptIn(axon.v1.LooseOptIn) returns (axon.v1.LooseOptIn);" in text
    for declaration in (
        "string prompt = 1;",
        "int64 count = 2;",
        "repeated double scores = 3;",
        "map<string, int64> labels = 4;",
        "optional string answer = 7;",
    ):
        assert declaration in text
    assert "// JSON-encoded" in text and "bytes blob = 1;" in text
    assert "bt_header_dendrite_signature" in text and "computed_body_hash" in text


def test_output_is_deterministic_and_field_numbers_stay(tmp_path: Path) -> None:
    first = emit(tmp_path / "a", "tests.fixtures.synapses:Rich").read_bytes()
    second = emit(tmp_path / "b", "tests.fixtures.synapses:Rich").read_bytes()
    assert first == second
    v2 = emit(tmp_path / "c", "tests.fixtures.synapses:RichV2").read_text()
    v1_fields = [line.strip() for line in first.decode().splitlines() if line.strip().endswith(";") and " = " in line]
    for line in v1_fields:
        if "Rich" not in line:
            assert line in v2  # same declaration, same number
    assert "bool added_later = 8;" in v2


def test_generated_python_stubs_work(tmp_path: Path) -> None:
    proto = emit(tmp_path / "proto", "tests.fixtures.synapses:Rich")
    out = tmp_path / "gen"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gen_protos.py"),
            str(proto),
            "-I",
            str(tmp_path / "proto"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(out))
    try:
        module = importlib.import_module("axon.v1.axon_service_pb2")
        grpc_module = importlib.import_module("axon.v1.axon_service_pb2_grpc")
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == "axon" or n.startswith("axon.")]:
            del sys.modules[name]
    message = module.Rich(prompt="hi", count=2, scores=[0.5])
    from axon_grpc.schema import schema_for
    from tests.fixtures.synapses import Rich

    assert schema_for(Rich).from_bytes(message.SerializeToString())["prompt"] == "hi"
    assert hasattr(grpc_module, "AxonStub")


def test_unmappable_type_is_refused_naming_class_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proto", "tests.fixtures.synapses:Loose", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Loose.blob" in err and "proto_json_fields" in err
    assert not (tmp_path / "axon").exists()


def test_name_clash_with_a_shared_message_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proto", "tests.fixtures.synapses:TerminalInfo", "-o", str(tmp_path)]) == 2
    assert "TerminalInfo" in capsys.readouterr().err


@pytest.mark.parametrize(
    "target, fragment",
    [
        ("no_such_module:Thing", "cannot import module"),
        ("tests.fixtures.synapses:Point", "is not a Synapse subclass"),
        ("tests.fixtures", "defines no Synapse subclass"),
    ],
)
def test_bad_targets_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, fragment: str
) -> None:
    assert main(["proto", target, "-o", str(tmp_path)]) == 2
    assert fragment in capsys.readouterr().err


def test_module_target_takes_every_synapse_it_defines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["proto", "tests.fixtures.synapses", "-o", str(tmp_path)]) == 2  # Loose is unmappable
    assert "Loose.blob" in capsys.readouterr().err


def test_shared_proto_states_the_same_contract() -> None:
    text = (ROOT / "proto" / "axon" / "v1" / "axon.proto").read_text()
    comment = "\n".join(
        line[3:] if line.startswith("// ") else "" for line in text.splitlines() if line.startswith("//")
    )
    assert CONTRACT.strip() in comment


def test_codegen_script_prints_other_languages() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--print"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "protoc" in done.stdout and "go" in done.stdout
    wrapper = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "emit_proto.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert wrapper.returncode == 0 and "MODULE[:CLASS]" in wrapper.stdout


def test_emitted_file_has_the_ping_method_and_generator_options(tmp_path: Path) -> None:
    text = emit(tmp_path, "tests.fixtures.synapses:Rich").read_text()
    assert "rpc Synapse(axon.v1.Synapse) returns (axon.v1.Synapse);" in text
    assert "message Synapse {}" in text
    for line in (
        'option go_package = "axon/v1;axonv1";',
        'option java_package = "axon.v1";',
        "option java_multiple_files = true;",
        'option csharp_namespace = "Axon.V1";',
    ):
        assert line in text


def test_proto_flags_set_and_drop_options(tmp_path: Path) -> None:
    assert (
        main(
            [
                "proto",
                "tests.fixtures.synapses:Rich",
                "-o",
                str(tmp_path),
                "--go-package",
                "example.com/me/client/gen/axon/v1;axonv1",
                "--option",
                "objc_class_prefix=",
                "--option",
                "java_multiple_files=false",
                "--option",
                "swift_prefix=AX",
            ]
        )
        == 0
    )
    text = (tmp_path / "axon" / "v1" / "axon_service.proto").read_text()
    assert 'option go_package = "example.com/me/client/gen/axon/v1;axonv1";' in text
    assert "objc_class_prefix" not in text and "option java_multiple_files = false;" in text
    assert 'option swift_prefix = "AX";' in text
    assert main(["proto", "tests.fixtures.synapses:Rich", "-o", str(tmp_path), "--option", "no_such=1"]) == 2


def test_streaming_methods_return_a_stream_described_as_the_server_sends_it(tmp_path: Path) -> None:
    from axon_grpc.cli.codegen import render

    from .test_streaming import Story

    text = render([Story])
    assert "rpc Story(axon.v1.Story) returns (stream axon.v1.StoryStream);" in text
    assert "// One message of the Story stream: exactly one of `chunk`" in text
