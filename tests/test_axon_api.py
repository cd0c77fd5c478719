"""The seed's Axon surface: configuration, identity, lifecycle, serve, thread pool order."""

from __future__ import annotations

import argparse
import asyncio
import base64
import threading
import time
import urllib.request

import grpc
import pytest

from axon_grpc import Axon, AxonInfo, Dendrite, KeypairWallet, Synapse, Wallet
from axon_grpc.registry import LocalRegistry
from axon_grpc.server.axon import default_wallet
from axon_grpc.server.config import Config
from axon_grpc.testing import build_axon, serve_axon

from .support import Dummy, RawCaller, dummy_forward


def test_add_args_with_prefix_and_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BT_AXON_PORT", "9100")
    monkeypatch.setenv("BT_AXON_MAX_WORKERS", "3")
    parser = argparse.ArgumentParser()
    Axon.add_args(parser, prefix="miner")
    args = parser.parse_args(["--miner.axon.ip", "127.0.0.1"])
    assert getattr(args, "miner.axon.port") == 9100
    assert getattr(args, "miner.axon.max_workers") == 3
    assert getattr(args, "miner.axon.ip") == "127.0.0.1"
    Axon.add_args(parser, prefix="miner")  # adding twice is harmless


def test_config_parses_arguments_into_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BT_AXON_PORT", raising=False)
    config = Axon.config(["--axon.port", "9200", "--axon.external_ip", "203.0.113.5", "--unrelated", "x"])
    assert config.axon.port == 9200
    assert config.axon.external_ip == "203.0.113.5"
    assert config.axon.ip == "[::]"
    assert config.axon.max_workers == 10
    assert Axon.config([]).axon.port == 8091


def test_help_prints_the_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    Axon.help()
    out = capsys.readouterr().out
    for flag in ("--axon.port", "--axon.ip", "--axon.external_ip", "--axon.external_port", "--axon.max_workers"):
        assert flag in out


@pytest.mark.parametrize(
    "port, external, message",
    [
        (1024, None, "Axon port must be in range [1024, 65535]"),
        (65535, None, "Axon port must be in range [1024, 65535]"),
        (8091, 80, "External port must be in range [1024, 65535]"),
    ],
)
def test_check_config_refuses_ports_out_of_range(port: int, external: int | None, message: str) -> None:
    config = Config(axon=Config(port=port, external_port=external, ip="[::]"))
    with pytest.raises(AssertionError, match=message.replace("[", r"\[")):
        Axon.check_config(config)
    with pytest.raises(AssertionError):
        Axon(wallet=KeypairWallet.generate(), port=port, external_port=external)


def test_constructor_arguments_and_info() -> None:
    wallet = KeypairWallet.generate()
    axon = Axon(wallet=wallet, port=9301, ip="127.0.0.1", external_ip="203.0.113.7", external_port=7070, max_workers=4)
    assert (axon.ip, axon.port, axon.external_ip, axon.external_port, axon.max_workers) == (
        "127.0.0.1",
        9301,
        "203.0.113.7",
        7070,
        4,
    )
    assert axon.full_address == "127.0.0.1:9301"
    assert axon.thread_pool.max_workers == 4
    assert axon.started is False and axon.uuid
    info = axon.info()
    assert isinstance(info, AxonInfo)
    assert (info.ip, info.port, info.ip_type, info.hotkey) == ("203.0.113.7", 7070, 4, wallet.hotkey.ss58_address)
    assert '"port": 7070' in axon.to_string() and wallet.hotkey.ss58_address in axon.to_string()
    assert "Synapse" in str(axon)


def test_serve_calls_the_subtensor(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AXON_GRPC_HOME", str(tmp_path))
    calls = []

    class RecordingSubtensor:
        def serve_axon(self, netuid: int, axon: Axon, certificate: object = None) -> bool:
            calls.append((netuid, axon, certificate))
            return True

    axon = build_axon()
    assert axon.serve(netuid=7, subtensor=RecordingSubtensor(), certificate="cert") is axon
    assert calls == [(7, axon, "cert")]
    assert axon.serve(netuid=7) is axon  # no subtensor: recorded in the local registry
    assert LocalRegistry(tmp_path / "registry.sqlite").axons(7) == [axon.info()]


def test_default_wallet_creates_a_dev_hotkey_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AXON_GRPC_HOME", str(tmp_path / "home"))
    config = Config(wallet=Config(path=str(tmp_path / "bt"), name=None, hotkey="default"))
    first = default_wallet(config)
    key_file = tmp_path / "home" / "wallets" / "dev" / "hotkeys" / "default"
    assert key_file.exists()
    before = key_file.read_bytes()
    second = default_wallet(config)
    assert key_file.read_bytes() == before
    assert first.hotkey.ss58_address == second.hotkey.ss58_address
    # A Bittensor default wallet, when present, wins over the dev key.
    Wallet(name="default", hotkey="default", path=str(tmp_path / "bt")).create_if_missing()
    chosen = default_wallet(config)
    assert chosen.path.startswith(str(tmp_path / "bt"))


def test_thread_mode_start_stop_and_sync_query() -> None:
    axon = build_axon(dummy_forward)
    assert axon.start() is axon and axon.started
    dendrite = Dendrite(KeypairWallet.generate())
    try:
        result = dendrite.query(axon.info(), Dummy(input=20), deserialize=False)
        assert result.output == 40 and result.dendrite.status_code == 200
        many = dendrite.query([axon.info(), axon.info()], Dummy(input=1), deserialize=False)
        assert [r.output for r in many] == [2, 2]
    finally:
        axon.stop()
    assert axon.started is False
    after = dendrite.query(axon.info(), Dummy(input=1), deserialize=False, timeout=2.0)
    dendrite.close_session()
    assert after.dendrite.status_code == 503
    assert after.dendrite.status_message == f"Service at 127.0.0.1:{axon.port}/Dummy unavailable."


def test_port_in_use_is_a_clear_error() -> None:
    first = build_axon()
    first.start()
    try:
        second = Axon(wallet=KeypairWallet.generate(), ip="127.0.0.1", port=first.port)
        with pytest.raises(OSError, match=f"cannot bind gRPC server to 127.0.0.1:{first.port}"):
            second.start()
    finally:
        first.stop()


async def test_stop_lets_calls_in_flight_finish() -> None:
    class Wait(Synapse):
        seconds: float = 0.0

    async def wait_forward(synapse: Wait) -> Wait:
        await asyncio.sleep(synapse.seconds)
        return synapse

    axon = build_axon()
    axon.endpoints.clear()
    axon.attach(forward_fn=wait_forward)
    await axon.start_async()
    dendrite = Dendrite(KeypairWallet.generate())
    call = asyncio.create_task(dendrite.call(axon.info(), Wait(seconds=0.5), deserialize=False))
    await asyncio.sleep(0.2)
    await axon.stop_async(grace=2.0)
    result = await call
    await dendrite.aclose()
    assert result.dendrite.status_code == 200


async def test_saturated_pool_runs_highest_priority_first() -> None:
    gate = threading.Event()
    order: list[int] = []

    class Job(Synapse):
        rank: int = 0

    def job_forward(synapse: Job) -> Job:
        if synapse.rank < 0:
            gate.wait(10)
        else:
            order.append(synapse.rank)
        return synapse

    def job_priority(synapse: Job) -> float:
        return float(synapse.rank)  # the header synapse carries rank from input_obj

    async with serve_axon({"forward_fn": job_forward, "priority_fn": job_priority}, max_workers=1) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.axon.wallet.hotkey.ss58_address)
        from axon_grpc.schema import schema_for

        def request(rank: int):
            body = schema_for(Job).to_bytes({"rank": rank})
            header = base64.b64encode(str(rank).encode()).decode()
            return raw.call("Job", body, raw.metadata(body, method="Job", bt_header_input_obj_rank=header))

        blocker = asyncio.create_task(request(-1))
        while h.axon.admission.running < 1 or h.axon.thread_pool.active < 1:
            await asyncio.sleep(0.01)
        ranks = [1, 5, 3, 4, 2]
        tasks = []
        for rank in ranks:  # one at a time, so submission order is known
            tasks.append(asyncio.create_task(request(rank)))
            deadline = time.monotonic() + 5
            while h.axon.admission.waiting < len(tasks) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        assert h.axon.admission.waiting == len(ranks)
        gate.set()
        results = await asyncio.gather(blocker, *tasks)
        await raw.close()
    assert all(r[0] == grpc.StatusCode.OK for r in results)
    assert order == [5, 4, 3, 2, 1]


def test_ping_synapse_is_attached_by_default() -> None:
    axon = build_axon()
    assert axon.forward_class_types["Synapse"] is Synapse


def test_readme_example_runs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "BT_AXON_PORT": "0",  # the system picks; axon.info() names the bound port
        "AXON_GRPC_HOME": str(tmp_path),
        "BT_WALLET_PATH": str(tmp_path / "bt"),
    }
    example = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"
    done = subprocess.run([sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42 200 Success"


def test_add_args_completes_a_parser_that_already_has_some_of_them() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--axon.port", type=int, default=1)  # added by another component first
    Axon.add_args(parser)
    args = parser.parse_args(["--axon.max_workers", "3"])
    assert getattr(args, "axon.port") == 1 and getattr(args, "axon.max_workers") == 3


async def test_port_zero_binds_ports_the_system_picks_and_the_axon_reports_them() -> None:
    axon = build_axon(dummy_forward, http_port=0, metrics_port=0)
    assert (axon.port, axon.http_port, axon.metrics_port) == (0, 0, 0)
    await axon.start_async()
    try:
        ports = (axon.port, axon.http_port, axon.metrics_port)
        assert all(isinstance(p, int) and p > 1024 for p in ports) and len(set(ports)) == 3, ports
        assert axon.info().port == axon.external_port == axon.port
        assert axon.full_address == f"127.0.0.1:{axon.port}" and axon.fast_config.port == axon.http_port
        bridge = AxonInfo(
            version=0, ip="127.0.0.1", port=axon.http_port, ip_type=4, hotkey=axon.info().hotkey, coldkey=""
        )
        async with Dendrite(KeypairWallet.generate()) as grpc_dendrite, Dendrite(transport="http") as http_dendrite:
            result = await grpc_dendrite.call(axon.info(), Dummy(input=4), timeout=10.0, deserialize=False)
            bridged = await http_dendrite.call(bridge, Dummy(input=5), timeout=10.0, deserialize=False)
        assert (result.output, result.dendrite.status_code) == (8, 200)
        assert (bridged.output, bridged.dendrite.status_code, bridged.axon.port) == (10, 200, axon.port)
        with urllib.request.urlopen(f"http://127.0.0.1:{axon.metrics_port}/metrics", timeout=10) as scrape:
            assert b"axon_requests_total" in scrape.read()
    finally:
        await axon.stop_async(grace=None)


def test_a_given_external_port_is_kept_when_the_bind_port_is_picked() -> None:
    axon = build_axon(dummy_forward, external_port=9443).start()
    try:
        assert axon.port not in (0, 9443) and axon.info().port == 9443
    finally:
        axon.stop()


def test_port_zero_is_accepted_and_other_ports_out_of_range_are_not() -> None:
    assert build_axon(port=0).port == 0
    for bad in ({"port": 80}, {"http_port": 70000}, {"metrics_port": 1}, {"external_port": 0}):
        with pytest.raises(AssertionError, match="must be in range"):
            build_axon(**bad)
