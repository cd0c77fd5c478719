"""The local registry: serve -> list -> a Dendrite call through it -> the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from axon_grpc import AxonInfo, Dendrite, KeypairWallet
from axon_grpc.cli import main
from axon_grpc.registry import LocalRegistry, Registry
from axon_grpc.testing import build_axon

from .support import Dummy, dummy_forward

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AXON_GRPC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AXON_GRPC_REGISTRY", raising=False)
    return tmp_path / "home"


def test_records_are_upserted_per_netuid_and_hotkey(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "r.sqlite")
    assert isinstance(registry, Registry)
    assert registry.axons(1) == [] and registry.netuids() == []
    axon = build_axon()
    assert registry.serve_axon(netuid=1, axon=axon, certificate=b"\x01\x02") is True
    registry.serve_axon(netuid=2, axon=axon)
    axon.external_port = 9999  # served again: the record is replaced, not added
    registry.serve_axon(netuid=1, axon=axon)
    assert registry.axons(1) == [axon.info()] and registry.axons(1)[0].port == 9999
    assert registry.netuids() == [1, 2]
    entries = registry.entries()
    assert [(e.netuid, e.info.hotkey) for e in entries] == [(1, axon.info().hotkey), (2, axon.info().hotkey)]
    assert entries[0].certificate is None and entries[1].certificate is None
    assert registry.remove(2, axon.info().hotkey) and not registry.remove(2, axon.info().hotkey)
    assert registry.netuids() == [1]


def test_default_path_is_under_the_data_dir(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert LocalRegistry().path == home / "registry.sqlite"
    monkeypatch.setenv("AXON_GRPC_REGISTRY", str(home / "elsewhere.db"))
    assert LocalRegistry().path == home / "elsewhere.db"


async def test_serve_without_subtensor_then_call_through_the_registry(home: Path) -> None:
    axons = [build_axon(dummy_forward) for _ in range(2)]
    for axon in axons:
        await axon.start_async()
        assert axon.serve(netuid=5) is axon  # no subtensor: the local registry
    try:
        found = LocalRegistry().axons(5)
        assert sorted(found, key=lambda i: i.port) == sorted((a.info() for a in axons), key=lambda i: i.port)
        async with Dendrite() as dendrite:
            results = await dendrite.forward(LocalRegistry().axons(5), Dummy(input=3), deserialize=False)
            assert [r.output for r in results] == [6, 6]
            assert {r.axon.hotkey for r in results} == {a.wallet.hotkey.ss58_address for a in axons}
            again = await dendrite.forward(synapse=Dummy(input=4), netuid=5, deserialize=False)
            assert [r.output for r in again] == [8, 8]
            assert await dendrite.forward(synapse=Dummy(input=4), netuid=6) == []
    finally:
        for axon in axons:
            await axon.stop_async(grace=None)


def test_the_cli_lists_and_calls(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    axon = build_axon(dummy_forward, wallet=KeypairWallet.generate()).start()
    try:
        axon.serve(netuid=3)
        LocalRegistry().register(4, AxonInfo(version=1, ip="127.0.0.1", port=1, ip_type=4, hotkey="5Other", coldkey=""))
        hotkey = axon.wallet.hotkey.ss58_address

        assert main(["registry", "list", "--netuid", "3"]) == 0
        out = capsys.readouterr().out
        assert hotkey in out and f"127.0.0.1:{axon.port}" in out and "5Other" not in out
        assert main(["registry", "list", "--json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(r["netuid"], r["hotkey"]) for r in rows] == [(3, hotkey), (4, "5Other")]

        env = {**os.environ, "AXON_GRPC_HOME": str(home)}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "axon_grpc",
                "call",
                "--netuid",
                "3",
                "tests.support:Dummy",
                "--fields",
                '{"input": 3}',
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{hotkey} 127.0.0.1:{axon.port} 200 'Success' " + '{"input": 3, "output": 6}'

        unreachable = subprocess.run(
            [
                sys.executable,
                "-m",
                "axon_grpc",
                "call",
                "--netuid",
                "4",
                "tests.support:Dummy",
                "--fields",
                '{"input": 3}',
                "--timeout",
                "2",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert unreachable.returncode == 1 and " 503 " in unreachable.stdout
    finally:
        axon.stop()
    assert main(["registry", "list", "--netuid", "9"]) == 0
    assert "no axons registered on netuid 9" in capsys.readouterr().err
