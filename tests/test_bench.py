"""The benchmark suite's own code: request builders, figures, ratios, and a one-second smoke run.

No benchmark runs here: the smoke tests drive two targets for half a second at a few
requests in flight, only to check that the code path works and the JSON holds the figures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from axon_grpc import Keypair
from axon_grpc.synapse import field_body_hash
from bench import TARGET_NAMES
from bench.cli import build_parser, main
from bench.memory import measure_memory
from bench.report import median_rounds, ratios, scaling, scaling_text, table
from bench.runner import percentile
from bench.wire import GrpcSigner, LegacyHttpRequest, grpc_body, new_uuid

from .redis_support import MISSING_REASON as REDIS_MISSING
from .redis_support import in_ci
from .support import CONFORMANCE

CAPTURE = CONFORMANCE / "request_dummy_input3.json"


def _parse_http(raw: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines]
    return request_line, headers, body  # type: ignore[return-value]


def test_legacy_requests_are_signed_afresh_like_a_10_5_dendrite() -> None:
    client, axon = Keypair.generate(), Keypair.generate()
    dendrite_uuid = new_uuid()
    request = LegacyHttpRequest(client, axon.ss58_address, "127.0.0.1", 8092, dendrite_uuid)
    first, second = request.render(), request.render()
    nonces = []
    for raw in (first, second):
        line, headers, body = _parse_http(raw)
        assert line == "POST /Dummy HTTP/1.1"
        h = dict(headers)
        assert int(h["Content-Length"]) == len(body)
        payload = json.loads(body)
        assert payload["input"] == 3 and payload["dendrite"]["nonce"] == int(h["bt_header_dendrite_nonce"])
        assert payload["dendrite"]["signature"] == h["bt_header_dendrite_signature"]
        assert h["computed_body_hash"] == field_body_hash(payload, ("input",))
        message = (
            f"{h['bt_header_dendrite_nonce']}.{client.ss58_address}.{axon.ss58_address}."
            f"{dendrite_uuid}.{h['computed_body_hash']}"
        )
        assert client.verify(message, h["bt_header_dendrite_signature"])
        nonces.append(int(h["bt_header_dendrite_nonce"]))
    assert nonces[1] > nonces[0]
    # the header names and their order of a real 10.5.0 dendrite
    captured = [name for name, _ in json.loads(CAPTURE.read_text())["request"]["headers"]]
    assert [name for name, _ in _parse_http(first)[1]] == captured


def test_grpc_metadata_is_the_dendrites() -> None:
    client, axon = Keypair.generate(), Keypair.generate()
    signer = GrpcSigner(client, axon.ss58_address, grpc_body())
    metadata = dict(signer.metadata("u-1", 1795716669893194313))
    assert metadata["computed_body_hash"] == hashlib.sha3_256(b"/axon.v1.Axon/Dummy\n" + grpc_body()).hexdigest()
    message = f"1795716669893194313.{client.ss58_address}.{axon.ss58_address}.u-1.{metadata['computed_body_hash']}"
    assert client.verify(message, metadata["bt_header_dendrite_signature"])
    assert metadata["bt_header_dendrite_crypto"] == "sr25519" and metadata["name"] == "Dummy"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([], 50) is None


def _level(concurrency: int, rps: float, cpu: float, p99: float) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "rps": rps,
        "server_cpu_ms_per_req": cpu,
        "p99_ms": p99,
        "p50_ms": p99 / 2,
        "p90_ms": p99,
        "server_cpu_cores": 1.0,
        "generator_cpu_cores": 0.5,
        "statuses": {"200": 10},
        "ok": 10,
        "notes": [],
    }


def test_ratios_follow_the_issue_targets() -> None:
    results = {
        "targets": [
            {"name": "grpc", "label": "g", "levels": [_level(16, 2000, 0.4, 10), _level(64, 2500, 0.4, 30)]},
            {"name": "grpc-async", "label": "a", "levels": [_level(16, 2000, 0.3, 10), _level(64, 2500, 0.3, 30)]},
            {"name": "grpc-inline", "label": "i", "levels": [_level(64, 2400, 0.34, 32)]},
            {"name": "http", "label": "h", "levels": [_level(16, 900, 0.6, 20), _level(64, 1000, 0.6, 80)]},
            {"name": "echo", "label": "e", "levels": [_level(64, 5000, 0.2, 10)]},
            {"name": "echo-verified", "label": "v", "levels": [_level(64, 4000, 0.25, 12)]},
            {"name": "legacy", "label": "l", "levels": [_level(16, 200, 4.5, 100), _level(64, 200, 4.5, 400)]},
        ]
    }
    rows = {row["name"]: row for row in ratios(results)}
    assert rows["gRPC (async forward) CPU/request vs legacy"]["value"] == pytest.approx(15.0)
    assert rows["gRPC (async forward) CPU/request vs legacy"]["met"] is True
    assert rows["gRPC (async forward) CPU/request vs bare verified echo"]["value"] == pytest.approx(1.2)
    assert rows["gRPC (async forward) CPU/request vs bare verified echo"]["met"] is False  # 1.2 > 1.15
    assert rows["gRPC inline sync forward vs async forward, CPU/request"]["met"] is False  # 1.13 > 1.10
    assert rows["gRPC (async forward) throughput vs legacy"]["value"] == pytest.approx(12.5)
    assert rows["HTTP bridge CPU/request vs legacy"]["met"] is False  # 7.5 < 12
    assert rows["gRPC (async forward) p99 at c=64 vs legacy"]["value"] == pytest.approx(30 / 400)
    results["targets"][-1] = {"name": "legacy", "label": "l", "skipped": "no venv", "levels": []}
    rows = {row["name"]: row for row in ratios(results)}
    assert rows["gRPC (async forward) CPU/request vs legacy"]["met"] is None
    assert "skipped" in table(results)


def test_rounds_keep_the_median_round_and_compare_round_by_round() -> None:
    # the machine slowed down in round 2: both targets' CPU doubled, their ratio did not move
    envoy = median_rounds([_level(64, 3000, 0.30, 20), _level(64, 1500, 0.60, 40), _level(64, 2900, 0.31, 21)])
    floor = median_rounds([_level(64, 5000, 0.20, 10), _level(64, 2500, 0.40, 20), _level(64, 4800, 0.21, 11)])
    ((level,),) = (envoy,)
    assert level["server_cpu_ms_per_req"] == 0.31 and level["rounds_cpu_ms_per_req"] == [0.30, 0.60, 0.31]
    assert level["rounds_rps"] == [3000, 1500, 2900]
    assert "median of 3 rounds: 0.300 0.600 0.310 ms" in table({"targets": [{"label": "e", "levels": envoy}]})
    results = {
        "targets": [
            {"name": "envoy", "label": "e", "levels": envoy},
            {"name": "envoy-echo-verified", "label": "f", "levels": floor},
            {"name": "envoy-http", "label": "h", "levels": [_level(64, 2000, 0.33, 20)]},
        ]
    }
    rows = {row["name"]: row for row in ratios(results)}
    floor_row = rows["Envoy gRPC CPU/request vs the verified echo on Envoy (its floor)"]
    assert floor_row["value"] == pytest.approx(1.5) and floor_row["met"] is False  # 1.5, 1.5, 1.476: median 1.5
    assert (
        floor_row["goal"] == "envoy/envoy-echo-verified <= 1.3"
        and "rounds' ratios (1.50 1.50 1.48)" in floor_row["detail"]
    )
    http_row = rows["Envoy legacy HTTP CPU/request vs the verified echo on Envoy"]
    assert http_row["value"] == pytest.approx(0.33 / 0.21) and http_row["met"] is True  # one round: the median rounds
    assert median_rounds([_level(1, 10, 0.5, 1)]) == [_level(1, 10, 0.5, 1)]  # one round: as it was


def test_threads_of_an_envoy_process_are_read_apart() -> None:
    import os
    import threading

    from bench.procstat import thread_cpu_seconds
    from bench.runner import _busiest_threads

    own = thread_cpu_seconds(os.getpid())
    assert f"{threading.main_thread().native_id}" in {name.rsplit(":", 1)[1] for name in own}
    before = {7: {"envoy:7": 1.0, "wrk:worker_0:9": 2.0, "envoy:8": 0.5}}
    after = {7: {"envoy:7": 1.3, "wrk:worker_0:9": 2.1, "envoy:8": 0.5, "new:10": 0.05}}
    assert _busiest_threads(before, after, 1000) == {"envoy:7": 0.3, "wrk:worker_0:9": 0.1, "new:10": 0.05}
    assert _busiest_threads({}, {}, 1000) is None
    level = {**_level(64, 3000, 0.4, 20), "thread_cpu_ms_per_req": {"envoy:7": 0.3, "wrk:worker_0:9": 0.1}}
    assert "threads envoy 0.300, wrk:worker_0 0.100 ms/req" in table({"targets": [{"label": "e", "levels": [level]}]})


def test_bench_command_arguments() -> None:
    args = build_parser().parse_args(["--concurrency", "64,1,16", "--targets", "legacy,grpc"])
    assert args.concurrency == [1, 16, 64] and args.targets == ["grpc", "legacy"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--targets", "nginx"])
    assert set(TARGET_NAMES) == {
        "grpc",
        "grpc-async",
        "grpc-async-nometrics",
        "grpc-inline",
        "envoy",
        "envoy-echo-verified",
        "envoy-http",
        "envoy-session",
        "grpc-async-session",
        "envoy-forged-signature",
        "envoy-forged-mac",
        "envoy-open",
        "envoy-open-flood",
        "library-edge",
        "grpc-1w-redis",
        "grpc-2w-redis",
        "http",
        "echo",
        "echo-verified",
        "legacy",
    }
    assert set(TARGET_NAMES) - set(build_parser().parse_args([]).targets) == {"grpc-1w-redis", "library-edge"}


def test_smoke_run_writes_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--targets",
            "grpc-async,http,legacy",
            "--concurrency",
            "2",
            "--duration",
            "0.6",
            "--warmup",
            "0.3",
            "--generators",
            "1",
            "--channels",
            "1",
            "--no-chart",
            "--quiet",
            "--legacy-python",
            str(tmp_path / "missing" / "python"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    printed = capsys.readouterr()
    assert "gRPC (async forward) CPU/request vs legacy" in printed.out and "skipped" in printed.err
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["meta"]["machine"]["nproc"] >= 1 and data["meta"]["options"]["concurrency"] == [2]
    targets = {t["name"]: t for t in data["targets"]}
    assert targets["legacy"]["skipped"]
    for name in ("grpc-async", "http"):
        (level,) = targets[name]["levels"]
        assert level["concurrency"] == 2 and level["ok"] > 0 and level["errors"] == 0
        assert level["statuses"] == {"200": level["ok"]}
        assert level["rps"] > 0 and 0 < level["p50_ms"] <= level["p90_ms"] <= level["p99_ms"]
        assert level["server_cpu_ms_per_req"] > 0 and level["generator_cpu_cores"] >= 0
    assert {row["name"] for row in data["ratios"]} >= {"gRPC (async forward) CPU/request vs bare verified echo"}


def test_rounds_interleave_the_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--targets", "grpc-async,echo-verified", "--concurrency", "2", "--duration", "0.4", "--warmup", "0.2"]
    argv += ["--generators", "1", "--channels", "1", "--rounds", "2", "--no-chart", "--out", str(tmp_path)]
    assert main(argv) == 0
    progress = [line.split()[0] for line in capsys.readouterr().err.splitlines() if " c=2 " in f" {line} "]
    assert progress == ["grpc-async", "echo-verified", "grpc-async", "echo-verified"]  # round by round
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["meta"]["options"]["rounds"] == 2
    for target in data["targets"]:
        (level,) = target["levels"]
        assert (
            len(level["rounds_cpu_ms_per_req"]) == 2
            and level["server_cpu_ms_per_req"] in level["rounds_cpu_ms_per_req"]
        )
    (row,) = [r for r in data["ratios"] if r["name"] == "gRPC (async forward) CPU/request vs bare verified echo"]
    assert row["value"] > 0 and "median of 2 rounds' ratios" in row["detail"]


def test_scaling_compares_two_workers_with_one_process_level_by_level() -> None:
    two = _level(16, 1500, 1.25, 40)
    two.update(
        worker_cpu_cores=[0.6, 0.58],
        connections_per_worker=[4, 4],
        redis_cpu_ms_per_req=0.05,
        generator_cpu_cores=0.5,
        machine_busy_cores=1.9,
    )
    results: dict[str, Any] = {
        "meta": {"machine": {"nproc": 2}},
        "targets": [
            {"name": "grpc", "label": "g", "levels": [_level(16, 1000, 1.0, 30), _level(64, 1100, 1.0, 90)]},
            {"name": "grpc-1w-redis", "label": "1", "levels": [_level(16, 600, 1.5, 50)]},
            {
                "name": "grpc-2w-redis",
                "label": "w",
                "levels": [two],
                "redis_round_trip": {
                    "calls": 100,
                    "redis": {"mean_us": 300.0, "p50_us": 250.0, "p99_us": 900.0, "client_cpu_us": 200.0},
                    "in_memory": {"mean_us": 2.0, "p50_us": 2.0, "p99_us": 5.0, "client_cpu_us": 3.0},
                    "added_latency_us": 298.0,
                    "added_client_cpu_us": 197.0,
                    "redis_cpu_us": 50.0,
                },
            },
        ],
    }
    summary = scaling(results)
    assert summary is not None
    (row,) = summary["levels"]
    assert row["factor"] == pytest.approx(1.5) and row["added_cpu_ms_per_req"] == pytest.approx(0.25)
    assert row["factor_vs_one_worker"] == pytest.approx(2.5)
    text = scaling_text(summary)
    assert "1.50x" in text and "same 2 cores" in text and "+298 us" in text
    rows = {r["name"]: r for r in ratios(results)}
    assert rows["Two workers + Redis throughput vs one process"]["value"] == pytest.approx(1500 / 1100)
    assert rows["Two workers vs one worker, both with Redis"]["value"] == pytest.approx(2.5)
    assert "one worker with the same store spends +0.500 ms" in text
    assert scaling({"targets": results["targets"][:1]}) is None


def test_two_worker_target_is_skipped_without_redis_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import redis_server
    from bench.targets import TargetUnavailable, start_target

    monkeypatch.setattr(redis_server, "redis_binary", lambda: None)
    with pytest.raises(TargetUnavailable, match="redis-server not found"):
        start_target("grpc-2w-redis", tmp_path)


def test_smoke_run_of_two_workers_with_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if REDIS_MISSING:
        if in_ci():
            pytest.fail(REDIS_MISSING)
        pytest.skip(REDIS_MISSING)
    code = main(
        [
            "--targets",
            "grpc,grpc-2w-redis",
            "--concurrency",
            "4",
            "--duration",
            "0.6",
            "--warmup",
            "0.3",
            "--generators",
            "1",
            "--channels",
            "1",
            "--no-chart",
            "--quiet",
            "--redis-probe-calls",
            "200",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    printed = capsys.readouterr()
    assert "Redis round trip per request" in printed.out and "load generator runs on the same" in printed.out
    data = json.loads((tmp_path / "bench.json").read_text())
    target = {t["name"]: t for t in data["targets"]}["grpc-2w-redis"]
    (level,) = target["levels"]
    assert level["ok"] > 0 and level["statuses"] == {"200": level["ok"]}
    # Both workers served (one connection each), their CPU is summed, Redis's counted apart.
    assert level["connections_per_worker"] == [1, 1]
    assert len(level["worker_cpu_cores"]) == 2 and all(c > 0 for c in level["worker_cpu_cores"])
    assert level["server_cpu_cores"] >= sum(level["worker_cpu_cores"]) - 1e-9
    assert level["redis_cpu_ms_per_req"] is not None and level["redis_cpu_ms_per_req"] >= 0
    probe = target["redis_round_trip"]
    assert probe["calls"] == 200 and probe["redis"]["mean_us"] > probe["in_memory"]["mean_us"] > 0
    (row,) = data["scaling"]["levels"]
    assert row["concurrency"] == 4 and row["factor"] > 0 and row["single_rps"] > 0
    # The target's redis-server and workers are gone.
    for pid in [target["server"]["redis_pid"], *target["server"]["worker_pids"]]:
        assert not Path(f"/proc/{pid}").exists()


def test_memory_mode_drives_the_verify_path_and_the_store() -> None:
    m = measure_memory(requests=600, uuids=200, verified=200, hotkeys=4)
    assert m["verified_path_requests"] == 200 and m["verified_path_refused"] == 0
    assert m["store_only_requests"] == 400 and m["store_only_not_accepted"] == 0
    assert m["nonce_store_entries"] == 200 and m["rss_final_mb"] > 0


def test_py_spy_summary_leaves_waiting_threads_out(tmp_path: Path) -> None:
    from bench.profiling import summarize_py_spy

    raw = tmp_path / "raw.txt"
    raw.write_text(
        "thread (1): MainThread;run (asyncio/runners.py:190);Handle._run (asyncio/events.py:80) 60\n"
        "thread (1): MainThread;Handle._run (asyncio/events.py:80);verify_legacy (axon_grpc/auth.py:1);"
        "_verify_raw (axon_grpc/keys.py:182) 30\n"
        "thread (2): axon-worker-0;Thread.run (threading.py:982);Condition.wait (threading.py:327) 500\n"
        "thread (3): Thread-1 (_poll_wrapper);Thread.run (threading.py:982) 10\n"
    )
    p = summarize_py_spy(raw)
    assert p["samples"] == 100 and p["idle_samples"] == 500
    assert p["threads"][0] == {"thread": "MainThread", "pct": 90.0}
    assert p["top_own"][0] == {"function": "Handle._run (asyncio/events.py:80)", "own_pct": 60.0}
    assert {"function": "verify_legacy", "cum_pct": 30.0} in p["top_cumulative"]
    assert "py-spy" in p["text"] and p["text"].startswith("profile of the grpc server process")
    assert summarize_py_spy(raw, target="envoy")["text"].startswith("profile of the envoy server process")


def test_profile_names_its_target_and_cprofile_only_the_bench_servers(tmp_path: Path) -> None:
    from bench.cli import _profile
    from bench.runner import Options, Progress

    skipped = _profile("cprofile", tmp_path, Options(concurrency=[2]), Progress(enabled=False), "envoy")
    assert skipped["text"].startswith("profile skipped: cProfile runs in grpc,") and "use py-spy" in skipped["text"]
    assert not list(tmp_path.iterdir())  # nothing was started


def test_dendrite_fanout_bench_runs_small(tmp_path: Path) -> None:
    """``bench --dendrite`` end to end, tiny: every answering axon answers, the dead one times out."""
    from bench.fanout import fanout_text, measure_fanout

    figures = measure_fanout(4, 0.25, 0.5, 2, tmp_path / "no-legacy-python")
    ours = [r for r in figures["runs"] if r["client"] == "ours"]
    assert [r["transport"] for r in ours] == ["grpc", "http"]
    for run in ours:
        assert run["ok"] == run["calls"] == 6, run
        assert run["fanout_statuses"] == {"200": 6, "408": 2}
        assert all(0.5 <= wall < 1.5 for wall in run["fanout_wall_s"])
        assert run["sockets_after_first_step"] == run["sockets_after_last_step"]
    assert "skipped" in fanout_text(figures)
