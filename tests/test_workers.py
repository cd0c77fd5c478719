"""Several worker processes on one port: ``axon-grpc serve ... --workers N`` for real."""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from axon_grpc import PROTOCOL_VERSION, AxonInfo, Dendrite
from axon_grpc.server.config import DEFAULT_MAX_WORKERS
from axon_grpc.server.workers import SharedStoreRequired, WorkerGroup, load_factory

from .fixtures.workers_app import WhoAmI, hotkey
from .redis_support import RedisServer
from .support import RawCaller

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.fixtures.workers_app:build_axon"
BODY = b"\x08\x07"  # WhoAmI(input=7)


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BT_AXON_", "BT_WALLET_"))}
    env.update(AXON_GRPC_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), **extra)
    return env


def start_serve(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """``axon-grpc serve`` on ports the system picks (``--axon.port 0``; the HTTP bridge's and the
    metrics port too when given as 0): :func:`wait_serving` reads the ports it printed."""
    command = [
        sys.executable,
        "-m",
        "axon_grpc",
        "serve",
        APP,
        "--server",
        "grpcio",
        "--axon.ip",
        "127.0.0.1",
        "--axon.port",
        "0",
        *args,
    ]  # the in-process workers (tests/edge covers --server envoy)
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=worker_env(tmp_path, **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def info(port: int) -> AxonInfo:
    return AxonInfo(
        version=PROTOCOL_VERSION, ip="127.0.0.1", port=port, ip_type=4, hotkey=hotkey().ss58_address, coldkey=""
    )


async def call_fresh(port: int, value: int = 7) -> WhoAmI:
    """One call over a new channel (a new connection, so the kernel picks a worker anew)."""
    async with Dendrite() as dendrite:
        return await dendrite.call(info(port), WhoAmI(input=value), timeout=5.0, deserialize=False)


@dataclass
class Served:
    """What ``serve`` printed once serving: its lines and the ports it bound."""

    lines: list[str]
    port: int
    http_port: int | None
    metrics_port: int | None


async def read_serving(process: subprocess.Popen[str], metrics: bool = False, timeout: float = 60.0) -> Served:
    """The lines ``serve`` prints up to the address it advertises (and the metrics port)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []

    def done() -> bool:
        return any("advertises" in line for line in lines) and not (metrics and "GET /metrics" not in lines[-1])

    while not done():
        line = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), deadline - time.monotonic())
        assert line, f"serve exited with {process.wait()}: {lines}"
        lines.append(line.strip())
    printed = "\n".join(lines)

    def port(pattern: str) -> int | None:
        found = re.search(pattern, printed)
        return int(found.group(1)) if found else None

    grpc_port = port(r"gRPC \(HTTP/2, h2c\) on [^ ]+:(\d+):")
    assert grpc_port, printed
    return Served(lines, grpc_port, port(r"legacy bridge .* on [^ ]+:(\d+):"), port(r"/metrics of all .* port (\d+)"))


async def wait_serving(process: subprocess.Popen[str], metrics: bool = False) -> Served:
    """Until ``serve`` reports that every worker serves, and a call succeeds."""
    served = await read_serving(process, metrics)
    result = await call_fresh(served.port)
    assert result.dendrite.status_code == 200, result.dendrite.status_message
    return served


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return process.returncode, err


async def test_two_workers_share_the_port_and_the_replay_state(tmp_path: Path, redis_server: RedisServer) -> None:
    process = start_serve(tmp_path, "--workers", "2", "--axon.nonce_store", redis_server.url)
    try:
        port = (await wait_serving(process)).port
        hits: dict[int, int] = {}
        for _ in range(40):
            result = await call_fresh(port)
            assert result.dendrite.status_code == 200 and result.input == 7
            hits[result.pid] = hits.get(result.pid, 0) + 1
        assert len(hits) == 2, hits  # both processes answered
        assert process.pid not in hits  # the workers, not the parent

        # One signed request, sent again over fresh connections: only the first is accepted,
        # and refusals come from the worker that did not accept it too.
        caller = RawCaller(f"127.0.0.1:{port}", hotkey().ss58_address)
        metadata = caller.metadata(BODY, method="WhoAmI")
        await caller.close()
        outcomes: list[tuple[grpc.StatusCode, str]] = []
        for _ in range(12):
            fresh = RawCaller(f"127.0.0.1:{port}", hotkey().ss58_address)
            status, _, _, trailing = await fresh.call("WhoAmI", BODY, metadata)
            await fresh.close()
            outcomes.append((status, trailing["bt_header_axon_uuid"]))
        assert [s for s, _ in outcomes].count(grpc.StatusCode.OK) == 1
        assert len({uuid for _, uuid in outcomes}) == 2  # both workers were asked
    finally:
        code, err = stop(process)
    assert code == 0, err


def test_several_workers_need_a_shared_store(tmp_path: Path) -> None:
    process = start_serve(tmp_path, "--workers", "2")
    try:
        process.wait(60)
    finally:
        code, err = stop(process)
    assert code == 2, err
    assert "--axon.nonce_store redis://" in err and "replayed to another worker" in err


async def test_a_dead_worker_stops_the_group_with_an_error(tmp_path: Path, redis_server: RedisServer) -> None:
    process = start_serve(tmp_path, "--workers", "2", "--axon.nonce_store", redis_server.url)
    try:
        port = (await wait_serving(process)).port
        victim = (await call_fresh(port)).pid
        os.kill(victim, signal.SIGKILL)
        await asyncio.to_thread(process.wait, 30)
    finally:
        code, err = stop(process)
    assert code == 1, err
    assert f"worker {victim} exited" in err, (code, err)


async def test_one_worker_serves_in_process(tmp_path: Path) -> None:
    process = start_serve(tmp_path, "--workers", "1")  # the in-memory store is fine here
    try:
        port = (await wait_serving(process)).port
        assert (await call_fresh(port)).pid == process.pid
    finally:
        code, err = stop(process, signal.SIGINT)
    assert code == 0, err


def test_python_api_from_a_script(tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in worker_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BT_AXON_IP", "127.0.0.1")
    monkeypatch.setenv("BT_AXON_PORT", "0")  # the first worker binds a port the system picks, the other joins it
    with pytest.raises(SharedStoreRequired):
        WorkerGroup(APP, workers=2).start()
    monkeypatch.setenv("BT_AXON_NONCE_STORE", redis_server.url)
    with WorkerGroup(APP, workers=2) as group:
        port = group.port
        assert port and len(set(group.pids)) == 2
        assert os.environ["BT_AXON_PORT"] == "0"  # the group's choice stays out of this process's settings
        pids = {asyncio.run(call_fresh(port)).pid for _ in range(30)}
        assert pids == set(group.pids)
    assert group.stop() == [0, 0]


def test_factories_are_named_module_colon_function() -> None:
    assert callable(load_factory(APP))
    with pytest.raises(ValueError, match="MODULE:FUNCTION"):
        load_factory("tests.fixtures.workers_app")


def _http_axon_uuid(port: int) -> str | None:
    """The answering worker's axon uuid, from an (unsigned, so refused) bridge request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/WhoAmI", body=b"{}", headers={"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.getheader("bt_header_axon_uuid")
    finally:
        connection.close()


async def test_the_http_bridge_port_is_shared_too(tmp_path: Path, redis_server: RedisServer) -> None:
    process = start_serve(tmp_path, "--workers", "2", "--axon.nonce_store", redis_server.url, "--axon.http_port", "0")
    try:
        http_port = (await wait_serving(process)).http_port
        assert http_port
        uuids = {await asyncio.to_thread(_http_axon_uuid, http_port) for _ in range(30)}
        assert len(uuids) == 2 and None not in uuids, uuids
    finally:
        code, err = stop(process)
    assert code == 0, err


async def test_serve_prints_hotkey_ports_and_protocols_and_a_client_calls_with_them(tmp_path: Path) -> None:
    process = start_serve(tmp_path, "--workers", "1", "--axon.http_port", "0", "--axon.external_ip", "127.0.0.1")
    try:
        served = await read_serving(process)
        lines, port, http_port = served.lines, served.port, served.http_port
        assert http_port and http_port != port
        printed = "\n".join(lines)
        hotkey_line = next(line for line in lines if line.startswith("axon-grpc: hotkey "))
        printed_hotkey = hotkey_line.split()[2]
        assert printed_hotkey == hotkey().ss58_address and "(sr25519)" in hotkey_line
        assert f"gRPC (HTTP/2, h2c) on 127.0.0.1:{port}: axon.v1.Axon/{{Synapse, WhoAmI}}" in printed
        assert f"HTTP/1.1 legacy bridge (SDK 7.2-10.5 dendrites) on 127.0.0.1:{http_port}" in printed
        assert f"advertises 127.0.0.1:{port}" in printed
        # a client that knows only what was printed
        target = AxonInfo(
            version=PROTOCOL_VERSION, ip="127.0.0.1", port=port, ip_type=4, hotkey=printed_hotkey, coldkey=""
        )
        async with Dendrite() as dendrite:
            result = await dendrite.call(target, WhoAmI(input=3), timeout=5.0, deserialize=False)
        assert result.dendrite.status_code == 200, result.dendrite.status_message
    finally:
        code, err = stop(process, signal.SIGINT)
    assert code == 0, err


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics`` on ``port``, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_one_scrape_shows_every_workers_counts(tmp_path: Path, redis_server: RedisServer) -> None:
    process = start_serve(
        tmp_path,
        "--workers",
        "2",
        "--axon.nonce_store",
        redis_server.url,
        "--metrics-port",
        "0",
        "--axon.http_port",
        "0",
    )
    try:
        served = await wait_serving(process, metrics=True)  # one call
        port, metrics_port, http_port = served.port, served.metrics_port, served.http_port
        assert metrics_port and http_port
        hits: dict[int, int] = {1: 1}
        for _ in range(39):
            result = await call_fresh(port)
            assert result.dendrite.status_code == 200
            hits[result.pid] = hits.get(result.pid, 0) + 1
        assert len(hits) == 3, hits  # both workers answered (and the first call, on either)
        # One signed request sent six times over fresh connections: one answer, five replays refused.
        caller = RawCaller(f"127.0.0.1:{port}", hotkey().ss58_address)
        metadata = caller.metadata(BODY, method="WhoAmI")
        await caller.close()
        for _ in range(6):
            fresh = RawCaller(f"127.0.0.1:{port}", hotkey().ss58_address)
            await fresh.call("WhoAmI", BODY, metadata)
            await fresh.close()

        samples = await asyncio.to_thread(_scrape, metrics_port)
        ok = {"synapse": "WhoAmI", "transport": "grpc", "scheme": "legacy"}
        assert samples.get(("axon_requests_total", tuple(sorted({**ok, "status_class": "2xx"}.items())))) == 41
        assert samples.get(("axon_requests_total", tuple(sorted({**ok, "status_class": "4xx"}.items())))) == 5
        refused = {"synapse": "WhoAmI", "transport": "grpc", "reason": "nonce"}
        assert samples.get(("axon_refusals_total", tuple(sorted(refused.items())))) == 5
        duration = {"synapse": "WhoAmI", "transport": "grpc"}
        assert samples.get(("axon_request_duration_seconds_count", tuple(sorted(duration.items())))) == 46
        assert samples.get(("axon_forward_duration_seconds_count", (("synapse", "WhoAmI"),))) == 41
        assert samples.get(("axon_workers", ())) == 2 * DEFAULT_MAX_WORKERS  # each worker's slots, summed
        # Each worker writes its queue gauges to the shared files once a second (multiprocess
        # mode), so a scrape may show a call that has just ended; within a few refreshes, none.
        deadline = time.monotonic() + 5
        idle = {"axon_workers_busy": 0.0, "axon_admission_queue_depth": 0.0}
        gauges = {name: samples.get((name, ())) for name in idle}
        while gauges != idle and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            later = await asyncio.to_thread(_scrape, metrics_port)
            gauges = {name: later.get((name, ())) for name in idle}
        assert gauges == idle
        build = [labels for name, labels in samples if name == "axon_build_info"]
        assert build and all(dict(labels)["mode"] == "workers" for labels in build), build
        # GET /metrics on the shared bridge port: whichever worker answers shows them all too.
        counted = ("axon_requests_total", "axon_refusals_total")
        expected = {key: v for key, v in samples.items() if key[0] in counted}
        for _ in range(4):
            bridge = await asyncio.to_thread(_scrape, http_port)
            assert {key: v for key, v in bridge.items() if key[0] in counted} == expected
    finally:
        code, err = stop(process)
    assert code == 0, err
