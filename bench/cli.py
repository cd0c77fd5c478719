"""``python -m bench``: the command's arguments and its run."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
from pathlib import Path
from typing import Any

from axon_grpc import logs

from . import DEFAULT_TARGETS, TARGET_NAMES

DEFAULT_OUT = "bench-results"


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"concurrency levels are integers separated by commas, not {text!r}") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be at least 1")
    return levels


def _targets(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in TARGET_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"targets are some of {','.join(TARGET_NAMES)}; unknown: {','.join(unknown)}")
    return [n for n in TARGET_NAMES if n in names]


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``python -m bench``."""
    bench = argparse.ArgumentParser(
        prog="python -m bench",
        description="Start each target server in its own process and drive it from load generator processes "
        "(multiprocessing spawn, asyncio clients) with requests signed with sr25519 and a fresh nonce each, as "
        "real clients send them. Targets: grpc (this project's Axon over gRPC), grpc-async (the same, async forward), "
        "grpc-2w-redis (the grpc axon as two worker processes on one port with the Redis nonce store, from a private "
        "redis-server; skipped when redis-server is missing), grpc-1w-redis (the same with one worker; only when "
        "named), http (its HTTP bridge, legacy "
        "requests), echo (bare grpc.aio echo), echo-verified (the echo + sha3 + sr25519 verify + nonce check), "
        "legacy (the Bittensor SDK 10.5.0 axon, from a separate virtualenv; skipped when absent). Prints, per "
        "target and concurrency level, requests/s, p50/p90/p99 latency, statuses and the server process's CPU "
        "milliseconds per request (all worker processes summed), then the ratios the performance targets name "
        "and, with grpc-2w-redis, the scaling factor over grpc and the Redis round trip per request; writes "
        "bench.json and "
        "bench.png (latency vs load; needs matplotlib: pip install -e '.[bench]').",
    )
    bench.add_argument(
        "--targets",
        type=_targets,
        default=list(DEFAULT_TARGETS),
        help=f"comma-separated targets, some of {','.join(TARGET_NAMES)} (default: {','.join(DEFAULT_TARGETS)})",
    )
    bench.add_argument(
        "--concurrency",
        type=_levels,
        default=[1, 16, 64],
        help="comma-separated levels: requests in flight (default 1,16,64)",
    )
    bench.add_argument("--duration", type=float, default=5.0, help="measured seconds per level (default 5)")
    bench.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every target this many times, interleaved (round 1: each target in turn, then round 2, "
        "...; all servers stay up meanwhile); each level reports its median round, the ratios the median of "
        "the rounds' own ratios (default 1)",
    )
    bench.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each level (default 1)")
    bench.add_argument(
        "--generators",
        type=int,
        default=2,
        help="load generator processes per level, at most one per request in flight (default 2)",
    )
    bench.add_argument(
        "--channels",
        type=int,
        default=4,
        help="gRPC channels (connections) per generator process (default 4); HTTP uses one "
        "keep-alive connection per request in flight",
    )
    bench.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds (default 10)")
    bench.add_argument(
        "--out", default=DEFAULT_OUT, help=f"folder for bench.json, bench.png and logs (default {DEFAULT_OUT})"
    )
    bench.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    bench.add_argument(
        "--legacy-python",
        type=Path,
        help="a Python with bittensor==10.5.0 for the legacy target (default: $AXON_GRPC_LEGACY_PYTHON, "
        "else .venv/legacy/bin/python as `make bench` builds it)",
    )
    bench.add_argument(
        "--address", help="measure a running server instead: [grpc://|http://]HOST:PORT (the Dummy synapse)"
    )
    bench.add_argument(
        "--axon-hotkey", help="with --address: the server's hotkey (default: learnt from an unsigned call)"
    )
    bench.add_argument("--server-pid", type=int, help="with --address: the server's pid, to read its CPU time")
    bench.add_argument(
        "--profile",
        nargs="?",
        const="cprofile",
        choices=("cprofile", "py-spy"),
        help="after the measurements, run the first of --targets once more at the highest level under a "
        "profiler and print its top costs: cprofile (default; the serving loop's thread, "
        "profile-TARGET.prof in --out; the targets served by this bench's own server process) or py-spy "
        "(sampling every thread without pausing the server, profile-TARGET.txt; for an Envoy target, "
        "the Envoy process that runs the application's Python). The profiled level's figures are not "
        "the measurement's.",
    )
    bench.add_argument(
        "--in-process",
        action="store_true",
        help="the pipeline's own cost per call, no network (Pipeline.handle beside the verified "
        "echo's work), then exit",
    )
    bench.add_argument(
        "--memory",
        action="store_true",
        help="instead of the load levels: drive 1,000,000 requests' worth of nonce-store work from "
        "100,000 dendrite uuids in-process and report the resident memory growth",
    )
    bench.add_argument("--memory-requests", type=int, default=1_000_000, help=argparse.SUPPRESS)
    bench.add_argument("--memory-uuids", type=int, default=100_000, help=argparse.SUPPRESS)
    bench.add_argument(
        "--memory-verified",
        type=int,
        default=100_000,
        help="with --memory: how many of the requests go through the full verify path (default 100000)",
    )
    bench.add_argument("--redis-probe-calls", type=int, default=None, help=argparse.SUPPRESS)
    bench.add_argument(
        "--dendrite",
        action="store_true",
        help="a validator's fan-out instead: this Dendrite (gRPC, HTTP) against the SDK 10.5.0 one "
        "over many axons on loopback, some never answering",
    )
    bench.add_argument("--axons", type=int, default=256, help="with --dendrite: axons per step (default 256)")
    bench.add_argument(
        "--dead-fraction",
        type=float,
        default=0.1,
        help="with --dendrite: share of the axons that never answer (default 0.1)",
    )
    bench.add_argument(
        "--fanout-timeout", type=float, default=12.0, help="with --dendrite: the step's timeout in seconds (default 12)"
    )
    bench.add_argument(
        "--fanout-steps",
        type=int,
        default=6,
        help="with --dendrite: steps to the answering axons, the first unmeasured (default 6)",
    )
    bench.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING).")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    return bench


def main(argv: list[str] | None = None) -> int:
    """``python -m bench [options]``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, "text")
    return run_bench(args, argv)


def run_bench(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """The ``bench`` command; 0 when it ran (targets missed are reported, not an error)."""
    from .procstat import machine

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if argv is None:
        argv = sys.argv[1:]
    command = "python -m bench " + " ".join(shlex.quote(a) for a in argv)
    results: dict[str, Any] = {
        "meta": {
            "command": command.strip(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
        },
    }
    if args.in_process:
        from .inprocess import in_process_text, measure_in_process

        results["in_process_us"] = figures = measure_in_process()
        print(in_process_text(figures))
        from .report import write_json

        print(f"wrote {write_json(results, out / 'bench-in-process.json')}")
        return 0
    if args.dendrite:
        from .fanout import fanout_text, measure_fanout
        from .report import write_json
        from .targets import default_legacy_python

        legacy = args.legacy_python or default_legacy_python()
        results["dendrite"] = fanout = measure_fanout(
            args.axons, args.dead_fraction, args.fanout_timeout, args.fanout_steps, legacy
        )
        print(fanout_text(fanout))
        print(f"wrote {write_json(results, out / 'bench-dendrite.json')}")
        return 0
    if args.memory:
        from .memory import measure_memory, memory_text

        print(
            f"memory: {args.memory_requests:,} requests from {args.memory_uuids:,} uuids "
            f"({args.memory_verified:,} through the verify path) ...",
            file=sys.stderr,
        )
        memory = measure_memory(args.memory_requests, args.memory_uuids, args.memory_verified)
        results["memory"] = memory
        print(memory_text(memory))
        from .report import write_json

        print(f"wrote {write_json(results, out / 'bench-memory.json')}")
        return 0
    return _run_levels(args, results, out)


def _run_levels(args: argparse.Namespace, results: dict[str, Any], out: Path) -> int:
    from .chart import available, write_chart
    from .report import median_rounds, ratios, ratios_text, scaling, scaling_text, table, write_json
    from .runner import Options, Progress, run_level
    from .targets import TargetUnavailable, default_legacy_python, external_target, start_target

    options = Options(
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        generators=max(1, args.generators),
        channels=max(1, args.channels),
        request_timeout=args.timeout,
    )
    results["meta"]["options"] = {
        "targets": ["external"] if args.address else args.targets,
        "concurrency": options.concurrency,
        "duration": options.duration,
        "warmup": options.warmup,
        "generators": options.generators,
        "channels": options.channels,
        "request_timeout": options.request_timeout,
        "request": "Dummy(input=3), sr25519-signed, fresh time.time_ns() nonce, one dendrite uuid per client loop",
    }
    progress = Progress(enabled=not args.quiet)
    legacy_python = args.legacy_python or default_legacy_python()
    logs = out / "logs"
    targets_out: list[dict[str, Any]] = []
    results["targets"] = targets_out
    results["meta"]["options"]["rounds"] = rounds = max(1, args.rounds)
    names = ["external"] if args.address else args.targets

    def start(name: str) -> Any:
        try:
            if name == "external":
                return external_target(args.address, args.axon_hotkey, args.server_pid)
            return start_target(name, logs, legacy_python=legacy_python)
        except TargetUnavailable as e:
            print(f"{name}: skipped: {e}", file=sys.stderr)
            targets_out.append({"name": name, "label": _label(name), "skipped": str(e), "levels": []})
            return None

    def measure(target: Any, entry: dict[str, Any]) -> None:
        try:
            for concurrency in options.concurrency:
                entry.setdefault("rounds", []).append(run_level(target, concurrency, options, progress))
            if "redis" in target.aux_pids and entry["rounds"] and "redis_round_trip" not in entry:
                entry["redis_round_trip"] = _redis_round_trip(target, progress, args.redis_probe_calls)
        except RuntimeError as e:
            print(f"{target.name}: stopped: {e}", file=sys.stderr)
            entry["error"] = str(e)

    if rounds == 1:  # one target up at a time
        for name in names:
            target = start(name)
            if target is None:
                continue
            entry = _entry(target)
            targets_out.append(entry)
            try:
                measure(target, entry)
            finally:
                target.stop()
    else:  # every target up, measured in turn, round after round
        started: list[tuple[Any, dict[str, Any]]] = []
        try:
            for name in names:
                target = start(name)
                if target is not None:
                    started.append((target, _entry(target)))
                    targets_out.append(started[-1][1])
            for _ in range(rounds):
                for target, entry in started:
                    if "error" not in entry:
                        measure(target, entry)
        finally:
            for target, _ in started:
                target.stop()
    for entry in targets_out:
        entry["levels"] = median_rounds(entry.pop("rounds", []))
    if args.profile and not args.address:
        results["profile"] = _profile(args.profile, out, options, progress, args.targets[0])

    print()
    print(table(results))
    rows = ratios(results)
    results["ratios"] = rows
    print()
    print(ratios_text(rows))
    summary = scaling(results)
    if summary is not None:
        results["scaling"] = summary
        print()
        print(scaling_text(summary))
    json_path = write_json(results, out / "bench.json")
    print(f"\nwrote {json_path}")
    if not args.no_chart:
        if available():
            print(f"wrote {write_chart(results, out / 'bench.png')}")
        else:
            print("chart skipped: matplotlib is not installed (pip install 'axon-grpc[bench]')")
    if "profile" in results:
        print()
        print(results["profile"]["text"])
    return 0


def _entry(target: Any) -> dict[str, Any]:
    return {
        "name": target.name,
        "label": target.label,
        "description": target.description,
        "transport": target.transport,
        "address": f"{target.host}:{target.port}",
        "server_pid": target.pid,
        **({"server": target.extra} if target.extra else {}),
    }


def _redis_round_trip(target: Any, progress: Any, calls: int | None = None) -> dict[str, Any]:
    """The Redis round-trip probe against the target's own redis-server (while it still runs)."""
    from .redis_server import PROBE_CALLS, round_trip

    calls = calls or PROBE_CALLS
    label = f"{target.name} redis round trip"
    progress.update(label, 0, 1, 0)
    try:
        probe = round_trip(target.extra["nonce_store"], target.aux_pids["redis"], calls)
    except Exception as e:
        raise RuntimeError(f"Redis round-trip probe failed: {type(e).__name__}: {e}") from e
    progress.finish(
        label,
        f"{probe['redis']['mean_us']:>6.0f} us mean ({calls:,} calls), "
        f"client CPU {probe['redis']['client_cpu_us']:.0f} us/call",
    )
    return probe


def _label(name: str) -> str:
    from .targets import TARGETS

    return TARGETS.get(name, (name, ""))[0]


#: Targets whose server is this bench's own ``bench.servers`` process, on its main thread's loop.
CPROFILED = ("grpc", "grpc-async", "grpc-async-nometrics", "grpc-inline", "http", "echo", "echo-verified")


def _profile(tool: str, out: Path, options: Any, progress: Any, name: str = "grpc") -> dict[str, Any]:
    """Target ``name`` at the highest level under ``tool`` during the measured window."""
    import subprocess

    from .profiling import py_spy_binary, py_spy_command, summarize, summarize_py_spy
    from .runner import profile_window, run_level
    from .targets import start_target

    concurrency = options.concurrency[-1]
    if tool == "cprofile":
        if name not in CPROFILED:
            return {"tool": tool, "text": f"profile skipped: cProfile runs in {', '.join(CPROFILED)}; use py-spy"}
        path = out / f"profile-{name}.prof"
        target = start_target(name, out / "logs", cprofile=path.resolve())
        try:
            level = run_level(target, concurrency, options, progress, on_window=profile_window(target))
        finally:
            target.stop()
        summary = summarize(path, level, target=name)
    else:
        binary = py_spy_binary()
        if binary is None:
            return {"tool": tool, "text": "profile skipped: py-spy not found (pip install py-spy)"}
        path = out / f"profile-{name}.txt"
        target = start_target(name, out / "logs")
        spies: list[subprocess.Popen[bytes]] = []
        pid = (target.worker_pids or [target.pid or 0])[0]  # an Envoy target: the process running the app

        def start() -> None:
            command = py_spy_command(binary, pid, options.duration, path)
            spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        try:
            level = run_level(target, concurrency, options, progress, on_window=(start, lambda: None))
            for spy in spies:
                spy.wait(options.duration + 30)
        finally:
            target.stop()
        if not path.exists():
            return {"tool": tool, "text": "profile failed: py-spy wrote nothing (is ptrace allowed here?)"}
        summary = summarize_py_spy(path, level, target=name)
    summary.update(tool=tool, concurrency=concurrency, path=str(path), level=level)
    return summary
