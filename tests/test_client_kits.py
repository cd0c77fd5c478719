"""The client kits (clients/typescript, clients/go) on their languages' generated stubs: the
test vectors, and signed calls to a real axon, in-process (``axon.start()``) and served by
``axon-grpc serve`` (Envoy).

Each kit is built here from the emitted ``.proto`` (TypeScript: proto-loader-gen-types and tsc;
Go: protoc-gen-go(-grpc) and ``go build`` in GOPATH mode) and run as a driver that prints what
each call got; the assertions are here. A kit whose toolchain is missing is skipped with the
reason, except under CI, where ``make test`` installs it and its absence fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Iterator

import grpc
import pytest

from axon_grpc import AxonInfo, Dendrite
from axon_grpc.auth.keys import Keypair
from axon_grpc.auth.legacy import answer_message, grpc_body_hash, reply_hash
from axon_grpc.auth.wallet import KeypairWallet
from axon_grpc.cli import codegen
from axon_grpc.schema.contract import CONTRACT_ANNOUNCEMENT

from .edge.support import environment, pyvoy_missing, start_server, stop
from .kits_app import SYNAPSES, build_axon
from .redis_support import in_ci
from .support import Dummy

ROOT = Path(__file__).resolve().parent.parent
TS_KIT = ROOT / "clients" / "typescript"
GO_KIT = ROOT / "clients" / "go"
VECTORS_PATH = ROOT / "proto" / "axon" / "v1" / "test_vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
CRYPTO = {key["name"]: key["crypto"] for key in VECTORS["keys"]}
#: Debian's Go sources (golang-google-grpc-dev, golang-golang-x-crypto-dev), for GOPATH mode.
GO_PATH = Path("/usr/share/gocode")

AXON_SEED = "0x" + "4a" * 32
CALLER_SEED = "0x" + "11" * 32
CLIENTS_DOC = ROOT / "docs" / "CLIENTS.md"


def doc_program(language: str, marker: str) -> str:
    """The ``language`` block of docs/CLIENTS.md holding ``marker``: a kit's shortest signed call."""
    blocks = [b for b in re.findall(rf"```{language}\n(.*?)```", CLIENTS_DOC.read_text(), flags=re.S) if marker in b]
    assert len(blocks) == 1, f"docs/CLIENTS.md has {len(blocks)} {language} blocks with {marker!r}"
    return blocks[0]


def substituted(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"{old!r} is not in the program of docs/CLIENTS.md"
        text = text.replace(old, new)
    return text


def unavailable(reason: str) -> None:
    """Skip with the reason; under CI (where `make test` installs the toolchains) fail."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def run(command: list[str], cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass
class Kit:
    name: str
    driver: list[str]  #: the program that calls an axon (then ADDRESS, then ``arguments``)
    arguments: list[str]
    vectors: list[str]  #: the program that computes the vectors (then FILE)
    example: list[str]  #: docs/CLIENTS.md's program (then ADDRESS)
    forging_mode: list[str]  #: the driver's arguments before ADDRESS for a forging server
    window_mode: tuple[list[str], list[str]]  #: the driver's arguments before ADDRESS, after AXON_HOTKEY
    crypto: str  #: the caller's key type
    checks_sr25519: bool  #: whether the kit can verify sr25519 signatures

    def call(self, address: str) -> dict[str, Any]:
        return json.loads(run([*self.driver, address, *self.arguments], timeout=180))

    def call_forging(self, address: str, axon_hotkey: str) -> dict[str, Any]:
        return json.loads(run([*self.driver, *self.forging_mode, address, *self.arguments, axon_hotkey], timeout=60))

    def call_holding(self, address: str, axon_hotkey: str) -> dict[str, Any]:
        before, after = self.window_mode
        return json.loads(run([*self.driver, *before, address, *self.arguments, axon_hotkey, *after], timeout=60))


@pytest.fixture(scope="module")
def proto(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emitted ``.proto`` of the kits' test axon (``out/axon/v1/axon_service.proto``)."""
    return codegen.write(SYNAPSES, tmp_path_factory.mktemp("kits") / "out")


@pytest.fixture(scope="module")
def typescript_kit(proto: Path, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    node = shutil.which("node")
    version = run([node, "-p", "process.versions.node"]).strip() if node else ""
    if node is None or tuple(int(part) for part in version.split(".")[:2]) < (20, 19):
        # `make test` does not install Node.js (Debian's is older): skipped, also under CI
        pytest.skip(f"the TypeScript kit needs Node.js 20.19+ (found: {version or 'none'})")
    if not (TS_KIT / "node_modules" / "typescript").is_dir():
        unavailable("clients/typescript/node_modules is missing: run `make test` (it runs npm ci)")
    build = tmp_path_factory.mktemp("typescript")
    for name in ("src", "test"):
        shutil.copytree(TS_KIT / name, build / name)
    for name in ("package.json", "tsconfig.json", "tsconfig.test.json"):
        shutil.copy(TS_KIT / name, build / name)
    (build / "node_modules").symlink_to(TS_KIT / "node_modules")
    program = doc_program("typescript", "@axon-grpc/client")
    (build / "test" / "doc_example.ts").write_text(
        substituted(
            program,
            {
                "'@axon-grpc/client'": "'../src/index.js'",
                "'out/axon/v1/axon_service.proto'": f"{json.dumps(str(proto))}",
                "'127.0.0.1:8091'": "process.argv[2]!",
            },
        )
    )
    out = proto.parents[2]
    gen_types = str(TS_KIT / "node_modules" / ".bin" / "proto-loader-gen-types")
    options = ["--grpcLib=@grpc/grpc-js", "--longs=Number", "--keepCase", "--defaults", "--importFileExtension=.js"]
    run(
        [
            gen_types,
            "axon/v1/axon_service.proto",
            *options,
            f"--outDir={build / 'test' / 'gen'}",
            f"--includeDirs={out}",
        ]
    )
    run([str(TS_KIT / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.test.json"], cwd=build)
    return Kit(
        name="typescript",
        driver=[node, str(build / "build" / "test" / "drive.js")],
        arguments=[str(proto), CALLER_SEED, "sr25519"],
        vectors=[node, str(build / "build" / "test" / "vectors.js")],
        example=[node, str(build / "build" / "test" / "doc_example.js")],
        forging_mode=[],
        window_mode=([], ["window"]),
        crypto="sr25519",
        checks_sr25519=True,
    )


@pytest.fixture(scope="module")
def go_kit(proto: Path, tmp_path_factory: pytest.TempPathFactory) -> Kit:
    missing = [tool for tool in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc") if shutil.which(tool) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed (`make go-tools` installs them from Debian's packages)")
    for package in ("google.golang.org/grpc", "golang.org/x/crypto/sha3"):
        if not (GO_PATH / "src" / package).is_dir():
            unavailable(f"{package} is not in {GO_PATH}/src (`make go-tools` installs it from Debian's packages)")
    build = tmp_path_factory.mktemp("go")
    src = build / "src"
    src.mkdir()
    run(
        [
            "protoc",
            f"-I{proto.parents[2]}",
            f"--go_out={src}",
            "--go_opt=paths=source_relative",
            f"--go-grpc_out={src}",
            "--go-grpc_opt=paths=source_relative",
            "axon/v1/axon_service.proto",
        ]
    )
    (src / "axonclient").mkdir()
    for file in GO_KIT.glob("*.go"):
        shutil.copy(file, src / "axonclient" / file.name)
    shutil.copytree(GO_KIT / "testdata" / "drive", src / "drive")
    (src / "docexample").mkdir()
    program = doc_program("go", "package main")
    (src / "docexample" / "main.go").write_text(substituted(program, {'"127.0.0.1:8091"': "os.Args[1]"}))
    go = {"GO111MODULE": "off", "GOFLAGS": "", "GOPATH": f"{build}:{GO_PATH}", "GOCACHE": str(build / "cache")}
    run(["go", "vet", "axonclient"], cwd=build, env=go)
    run(["go", "build", "-o", "drive", "drive"], cwd=build, env=go)
    run(["go", "build", "-o", "docexample", "docexample"], cwd=build, env=go)
    binary = str(build / "drive")
    return Kit(
        name="go",
        driver=[binary],
        arguments=[CALLER_SEED],
        vectors=[binary, "vectors"],
        example=[str(build / "docexample")],
        forging_mode=["forged"],
        window_mode=(["window"], []),
        crypto="ed25519",
        checks_sr25519=False,
    )


@pytest.fixture(params=["typescript", "go"])
def kit(request: pytest.FixtureRequest) -> Kit:
    return request.getfixturevalue(f"{request.param}_kit")  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- vectors


def test_kit_passes_the_test_vectors(kit: Kit) -> None:
    got = json.loads(run([*kit.vectors, str(VECTORS_PATH)]))
    can_sign = {name for name, crypto in CRYPTO.items() if kit.checks_sr25519 or crypto == "ed25519"}

    assert [k["name"] for k in got["keys"]] == [k["name"] for k in VECTORS["keys"] if k["name"] in can_sign]
    for mine, key in zip(got["keys"], (k for k in VECTORS["keys"] if k["name"] in can_sign)):
        assert (mine["public_key"], mine["ss58"]) == (key["public_key"], key["ss58"])

    for mine, entry in zip(got["ss58"], VECTORS["ss58"], strict=True):
        if entry["valid"]:
            assert mine == {"name": entry["name"], "decoded": entry["public_key"], "encoded": entry["address"]}
        else:
            assert "error" in mine["decoded"], entry["name"]  # refused: non-canonical, other format, checksum

    for mine, entry in zip(got["requests"], VECTORS["requests"], strict=True):
        assert mine["body_hash"] == entry["body_hash"]
        if entry["signer"] not in can_sign:
            assert "signed_message" not in mine
            continue
        assert mine["signed_message"] == entry["signed_message"]
        assert mine["own_signature_verifies"] is True and mine["vector_signature_verifies"] is True
        if entry["deterministic"]:
            assert mine["signature"] == entry["signature"]
        signature_key = "bt_header_dendrite_signature"
        assert [value for key, value in mine["metadata"] if key == signature_key] == [mine["signature"]]
        sent = {(key, value) for key, value in mine["metadata"] if key != signature_key}
        wanted = {(key, value) for key, value in entry["metadata"] if key != signature_key}
        assert sent - wanted == {("name", entry["method"].rsplit("/", 1)[1])}
        assert wanted <= sent

    for mine, entry in zip(got["negative"], VECTORS["negative"], strict=True):
        right_hash = grpc_body_hash(entry["method"], bytes.fromhex(entry["body"]))
        assert mine["body_hash"] == right_hash  # the kit hashes by the rule, whatever the vector broke
        if "R7" in entry["rules"]:
            assert entry["body_hash"] != right_hash
        # the kit's SS58 decoder refuses the hotkeys the axon refuses (R12), and only those
        assert mine["hotkey_sent_decodes"] is ("R12" not in entry["rules"]), entry["name"]

    for mine, entry in zip(got["answers"], VECTORS["answers"], strict=True):
        assert (mine["answer_hash"], mine["signed_message"]) == (entry["answer_hash"], entry["signed_message"])
        if entry["signer"] not in can_sign:
            assert "problem" not in mine
            continue
        assert mine["problem"] is None
        assert mine["unsigned"] == "the axon did not sign its answer"
        assert mine["tampered_body"].startswith("answer signature mismatch")
        assert mine["other_receiver"].startswith("answer signature mismatch")

    for mine, entry in zip(got["error_answers"], VECTORS["error_answers"], strict=True):
        assert mine["signed_message"] == entry["signed_message"]
        assert mine.get("verifies") is (True if entry["signer"] in can_sign else None)


def test_typescript_kit_passes_the_session_vectors(typescript_kit: Kit) -> None:
    got = json.loads(run([*typescript_kit.vectors, str(VECTORS_PATH)]))["sessions"]
    open_, accept, calls = VECTORS["sessions"]
    assert got[0] == {
        "name": open_["name"],
        "encoded": open_["encoded"],
        "transcript": open_["transcript"],
        "signature": open_["signature"],  # ed25519: deterministic
        "vector_signature_verifies": True,
    }
    mine = got[1]
    assert mine["reencoded"] == accept["encoded"]
    assert mine["transcript"] == accept["transcript"]
    assert mine["signature_verifies"] is True
    for name in ("shared_secret", "salt", "key"):
        assert mine[name] == accept[name], name
    assert mine["session_id"] == accept["message"]["session_id"]
    # a forged accept is never used: each altered echo, term or signature is refused
    refused = "session accept not verified: "
    assert mine["altered_nonce"] == {"error": refused + "nonce is not the one sent"}
    assert mine["altered_hotkey"] == {"error": refused + "dendrite_hotkey is not the one sent"}
    assert mine["altered_ephemeral"] == {"error": refused + "dendrite_ephemeral_key is not the one sent"}
    assert mine["altered_terms"] == {"error": refused + "the axon's signature does not verify"}
    assert mine["wrong_signature"] == {"error": refused + "the axon's signature does not verify"}
    assert mine["garbage"]["error"].startswith(refused)
    assert got[2]["calls"] == [call["metadata"] for call in calls["calls"]]


# ---------------------------------------------------------------------------- a real axon

#: The axon's key type per kit and server mode: each kit meets both.
AXON_CRYPTO = {
    ("typescript", "inprocess"): "sr25519",
    ("typescript", "serve"): "ed25519",
    ("go", "inprocess"): "ed25519",
    ("go", "serve"): "sr25519",
}


@pytest.fixture(scope="module")
def served() -> Iterator[dict[tuple[str, str], dict[str, Any]]]:
    """What each (kit, mode) run got, so the call and concurrency checks share one run."""
    yield {}


def in_process(crypto: str) -> Generator[str, None, None]:
    axon = build_axon(AXON_SEED, crypto, ip="127.0.0.1", port=0)
    axon.start()
    try:
        yield f"127.0.0.1:{axon.port}"
    finally:
        axon.stop()


def by_serve(crypto: str) -> Generator[str, None, None]:
    missing = pyvoy_missing()
    if missing is not None:
        pytest.skip(missing)
    command = [sys.executable, "-m", "axon_grpc", "serve", "tests.kits_app:build_axon"]
    command += ["--axon.ip", "127.0.0.1", "--axon.port", "0", "--grace", "2"]
    served = start_server(command, environment(KITS_AXON_SEED=AXON_SEED, KITS_AXON_CRYPTO=crypto))
    process, port = served.process, served.port
    try:
        yield f"127.0.0.1:{port}"
    finally:
        assert stop(process) == 0


def outcome(kit: Kit, mode: str, served: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    if (kit.name, mode) not in served:
        crypto = AXON_CRYPTO[kit.name, mode]
        server = in_process(crypto) if mode == "inprocess" else by_serve(crypto)
        address = next(server)
        try:
            served[kit.name, mode] = kit.call(address)
        finally:
            server.close()
    return served[kit.name, mode]


MODES = ["inprocess", "serve"]


@pytest.mark.parametrize("mode", MODES)
def test_kit_makes_signed_calls_and_reads_each_refusal(
    kit: Kit, mode: str, served: dict[tuple[str, str], dict[str, Any]]
) -> None:
    got = outcome(kit, mode, served)
    crypto = AXON_CRYPTO[kit.name, mode]
    axon = Keypair.create_from_seed(AXON_SEED, crypto).ss58_address
    assert got["hotkey"] == Keypair.create_from_seed(CALLER_SEED, kit.crypto).ss58_address
    assert got["learnt_hotkey"] == axon  # from the ping's trailers

    assert got["unary"] == {
        "code": 0,
        "reply": {"input": 7, "output": 14},
        "status_code": 200,
        "axon_hotkey": axon,
        "contract": CONTRACT_ANNOUNCEMENT,  # the axon-contract trailer (rule R22)
    }
    counts = {f"k{i}": i for i in range(40)}
    tally = got["map"]
    assert (tally["code"], tally["reply"]["total"], tally["status_code"]) == (0, sum(counts.values()), 200)
    assert tally.get("counts", tally["reply"].get("counts")) == counts
    stream = got["stream"]
    assert (stream["code"], stream["status_code"]) == (0, 200)
    assert stream["chunks"] == ["ONCE", "UPON", "A", "TIME"] and stream["completion"] == "ONCE UPON A TIME"

    def refused(name: str) -> tuple[int, int | None, str]:
        entry = got[name]
        return entry["code"], entry.get("status_code"), entry.get("details", "")

    code, status, details = refused("bad_signature")  # signed for another axon's hotkey
    assert (code, status) == (16, 401) and details.startswith("Not Verified with error: Signature mismatch")
    code, status, details = refused("blacklisted")
    assert (code, status) == (7, 403) and details == "Forbidden. Key is blacklisted: input 13 is blacklisted."
    code, status, details = refused("unknown")
    assert (code, status) == (12, 404) and details.startswith("Synapse name 'Absent' not found.")
    code, status, details = refused("too_large")  # over max_request_bytes (64 KiB)
    assert code == 8 and "65536" in details
    code, status, details = refused("bad_request")  # a uuid of 65 characters (at most 64)
    assert (code, status) == (3, 400) and details.startswith("Improperly formatted request.")
    assert "uuid" in details and "64 characters" in details
    code, status, details = refused("deadline")  # the call's 0.5 s pass while the forward sleeps 3 s
    assert code == 4
    code, status, details = refused("miner_error")
    assert (code, status, details) == (13, 500, "the miner says no")

    signed = got["signed"]
    if kit.checks_sr25519 or crypto == "ed25519":
        assert signed == {
            "code": 0,
            "reply": {"input": 21, "output": 42},
            "status_code": 200,
            "axon_hotkey": axon,
            "verified": True,
            "contract": CONTRACT_ANNOUNCEMENT,
        }
    else:  # an sr25519 axon's answer cannot be checked in Go: refused, never used unchecked
        assert signed["code"] == 15 and signed["details"].startswith("Answer not verified: answer signature mismatch")
    assert refused("signed_stream")[0::2] == (15, "Answer not verified: streamed answers are not signed")


@pytest.mark.parametrize("mode", MODES)
def test_typescript_kit_calls_on_a_session_and_a_replayed_counter_is_refused(typescript_kit: Kit, mode: str) -> None:
    crypto = AXON_CRYPTO["typescript", mode]
    axon = Keypair.create_from_seed(AXON_SEED, crypto).ss58_address
    server = in_process(crypto) if mode == "inprocess" else by_serve(crypto)
    address = next(server)
    try:
        command = [*typescript_kit.driver, address, *typescript_kit.arguments, axon, "sessions"]
        got = json.loads(run(command, timeout=60))
    finally:
        server.close()
    assert got["session_hotkey"] == Keypair.create_from_seed(CALLER_SEED, typescript_kit.crypto).ss58_address
    assert got["call"] == {"code": 0, "details": "", "status_code": 200}
    replayed = got["replayed"]  # the same counter and MAC again
    assert (replayed["code"], replayed["status_code"]) == (16, 401), replayed
    assert "counter" in replayed["details"].lower()
    assert got["other_axon"].startswith("session open refused: ")  # an open for another hotkey


@pytest.mark.parametrize("mode", MODES)
def test_kit_makes_200_concurrent_calls_on_one_connection(
    kit: Kit, mode: str, served: dict[tuple[str, str], dict[str, Any]]
) -> None:
    got = outcome(kit, mode, served)
    assert got["concurrency"] == {"codes": {"0": 200}, "right": 200, "details": []}
    # on a new connection, the 200 calls made before it is up: none overtaken past the window
    assert got["cold_burst"] == {"codes": {"0": 200}, "right": 200, "details": []}


def test_the_docs_signed_call_runs(kit: Kit) -> None:
    """docs/CLIENTS.md's program for the kit, as it stands there, against an sr25519 axon."""
    with contextlib.closing(in_process("sr25519")) as server:
        address = next(server)
        seed = Keypair.create_from_seed(CALLER_SEED, kit.crypto).seed_hex
        printed = run([*kit.example, address], timeout=60, env={"HOTKEY_SEED": seed.removeprefix("0x")})
    assert printed.strip() == {"typescript": "14 200", "go": "14 <nil> 200"}[kit.name]


GENUINE = Keypair.create_from_seed("0x" + "5e" * 32, "ed25519")
IMPOSTOR = Keypair.create_from_seed("0x" + "1d" * 32, "ed25519")


@contextlib.contextmanager
def dummy_server(dummy: Any, threads: int) -> Iterator[str]:
    """A gRPC server on a port of the system's choice whose ``axon.v1.Axon/Dummy`` is ``dummy``."""
    server = grpc.server(ThreadPoolExecutor(threads))
    handler = grpc.unary_unary_rpc_method_handler(dummy)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("axon.v1.Axon", {"Dummy": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


@contextlib.contextmanager
def forging_server() -> Iterator[str]:
    """A server posing as GENUINE's axon: ``Dummy`` answers ``input`` 1 signed by another key,
    2 unsigned, 3 signed by GENUINE (the control), each with a right answer body."""

    def dummy(request: bytes, context: grpc.ServicerContext) -> bytes:
        sent = dict(context.invocation_metadata())
        value = request[1]  # Dummy{input: value}: 08 value
        answer = bytes([0x08, value, 0x10, 2 * value])
        nonce, hotkey, uuid = (sent[f"bt_header_dendrite_{key}"] for key in ("nonce", "hotkey", "uuid"))
        message = answer_message(int(nonce), hotkey, GENUINE.ss58_address, uuid, reply_hash(answer))
        trailers = [("bt_header_axon_status_code", "200"), ("bt_header_axon_hotkey", GENUINE.ss58_address)]
        signer = {1: IMPOSTOR, 3: GENUINE}.get(value)
        if signer is not None:
            trailers.append(("bt_header_axon_signature", signer.sign_hex(message)))
        context.set_trailing_metadata(trailers)
        return answer

    with dummy_server(dummy, threads=4) as address:
        yield address


def test_kit_refuses_an_answer_the_axon_did_not_sign(kit: Kit) -> None:
    """A server that is not the axon (or tampers with its answers) cannot pass one off."""
    with forging_server() as address:
        got = kit.call_forging(address, GENUINE.ss58_address)
    assert got["impostor"]["code"] == 15
    assert got["impostor"]["details"].startswith("Answer not verified: answer signature mismatch")
    assert "reply" not in got["impostor"]
    assert (got["unsigned"]["code"], got["unsigned"]["details"]) == (
        15,
        "Answer not verified: the axon did not sign its answer",
    )
    assert got["genuine"] == {
        "code": 0,
        "reply": {"input": 3, "output": 6},
        "status_code": 200,
        "axon_hotkey": GENUINE.ss58_address,
        "verified": True,
    }


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


@contextlib.contextmanager
def holding_server(seen: dict[str, int]) -> Iterator[str]:
    """A server that holds ``Dummy`` 0 until 63 calls with newer nonces (of its uuid) arrived, or
    10 s passed, then 0.5 s more; ``seen["while_held"]`` counts the newer nonces that reached it
    by then, before Dummy 0 itself or while it was held."""
    lock = threading.Condition()
    arrived: list[int] = []  # the other calls' nonces, until Dummy 0 is answered
    held: dict[str, int] = {}

    def newer() -> int:
        return sum(nonce > held["nonce"] for nonce in arrived)

    def dummy(request: bytes, context: grpc.ServicerContext) -> bytes:
        sent = dict(context.invocation_metadata())
        nonce = int(sent["bt_header_dendrite_nonce"])
        value = dummy_input(request)
        with lock:
            if value == 0:
                held["nonce"] = nonce
                lock.wait_for(lambda: newer() >= REPLAY_WINDOW - 1, timeout=10)
                lock.wait(0.5)  # any call past the window would arrive now
                seen["while_held"] = newer()
            elif "while_held" not in seen:
                arrived.append(nonce)
                lock.notify_all()
        return dummy_reply(value)

    with dummy_server(dummy, threads=8) as address:
        yield address


def dummy_input(request: bytes) -> int:
    """``Dummy.input`` of a serialised request (``08`` varint, or nothing for 0)."""
    value = 0
    for shift, byte in enumerate(request[1:]):
        value |= (byte & 0x7F) << (7 * shift)
        if byte < 0x80:
            break
    return value


def dummy_reply(value: int) -> bytes:
    return b"\x08" + varint(value) + b"\x10" + varint(2 * value)


#: The axon accepts a nonce overtaken by at most this many newer ones of its key (rule R14).
REPLAY_WINDOW = 64


def test_kit_never_lets_a_call_be_overtaken_past_the_replay_window(kit: Kit) -> None:
    """While one call is unfinished, at most 63 calls of its uuid are signed after it (rule R23),
    so however the calls are reordered on their way (transport retries, an axon checking nonces
    in parallel), none is refused for its nonce (R14); the others wait for a slot."""
    seen: dict[str, int] = {}
    with holding_server(seen) as address:
        got = kit.call_holding(address, GENUINE.ss58_address)
    assert seen["while_held"] == REPLAY_WINDOW - 1
    assert got == {"right": 200}


async def test_dendrite_never_lets_a_call_be_overtaken_past_the_replay_window() -> None:
    """The Python Dendrite keeps the same window (rule R23): 63 newer nonces while one is held."""
    seen: dict[str, int] = {}
    dendrite = Dendrite(wallet=KeypairWallet(Keypair.create_from_seed(CALLER_SEED, "ed25519")))
    with holding_server(seen) as address:
        ip, port = address.rsplit(":", 1)
        info = AxonInfo(version=0, ip=ip, port=int(port), ip_type=4, hotkey=GENUINE.ss58_address, coldkey="")
        try:
            await dendrite.call(info, Dummy(input=1))  # the Dendrite learns the axon speaks gRPC
            first = asyncio.ensure_future(dendrite.call(info, Dummy(input=0), deserialize=False))
            await asyncio.sleep(0.3)  # Dummy 0 is signed first
            rest = await asyncio.gather(
                *(dendrite.call(info, Dummy(input=i), deserialize=False) for i in range(1, 200))
            )
            results = [await first, *rest]
        finally:
            await dendrite.aclose()
    assert seen["while_held"] == REPLAY_WINDOW - 1
    assert [(r.dendrite.status_code, r.output) for r in results] == [(200, 2 * i) for i in range(200)]


async def test_a_held_call_holds_back_no_call_to_another_axon() -> None:
    """The Dendrite's signing window is per axon (each axon keeps its own replay window): while
    one axon holds a call, 150 calls to another axon are signed and answered at once."""
    seen: dict[str, int] = {}
    dendrite = Dendrite(wallet=KeypairWallet(Keypair.create_from_seed(CALLER_SEED, "ed25519")))

    def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
        return dummy_reply(dummy_input(request))

    def info_of(address: str) -> AxonInfo:
        ip, port = address.rsplit(":", 1)
        return AxonInfo(version=0, ip=ip, port=int(port), ip_type=4, hotkey=GENUINE.ss58_address, coldkey="")

    with holding_server(seen) as slow, dummy_server(answer, threads=8) as quick:
        try:
            for address in (slow, quick):  # the Dendrite learns each axon speaks gRPC
                await dendrite.call(info_of(address), Dummy(input=1))
            held = asyncio.ensure_future(dendrite.call(info_of(slow), Dummy(input=0), deserialize=False))
            await asyncio.sleep(0.3)  # Dummy 0 is held by the slow axon (for 10 s: nothing newer reaches it)
            rest = await asyncio.gather(
                *(dendrite.call(info_of(quick), Dummy(input=i), deserialize=False) for i in range(1, 151)),
            )
            assert not held.done()  # every call to the other axon was answered while it was held
            assert [(r.dendrite.status_code, r.output) for r in rest] == [(200, 2 * i) for i in range(1, 151)]
            assert (await held).dendrite.status_code == 200
        finally:
            await dendrite.aclose()
    assert seen["while_held"] == 0
