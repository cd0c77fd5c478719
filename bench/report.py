"""The report: a table per target and level, the issue's ratios, and the JSON of all figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

#: p99 is compared at this concurrency (the issue's figure), else at the highest level run.
P99_LEVEL = 64


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    """The per-target, per-level table (Markdown, readable in a terminal)."""
    header = (
        "| target | conc | req/s | p50 ms | p90 ms | p99 ms | server CPU ms/req | server cores "
        "| gen cores | statuses | notes |"
    )
    lines = [header, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|"]
    for target in results["targets"]:
        if target.get("skipped"):
            lines.append(f"| {target['label']} | - | - | - | - | - | - | - | - | skipped | {target['skipped']} |")
            continue
        for level in target["levels"]:
            statuses = " ".join(f"{k}:{v}" for k, v in level["statuses"].items()) or "-"
            notes = "; ".join(_spread(level) + list(level.get("notes") or []))
            lines.append(
                f"| {target['label']} | {level['concurrency']} | {level['rps']:.0f} | {_f(level['p50_ms'])} "
                f"| {_f(level['p90_ms'])} | {_f(level['p99_ms'])} | {_f(level['server_cpu_ms_per_req'], 3)} "
                f"| {_f(level['server_cpu_cores'])} | {_f(level['generator_cpu_cores'])} | {statuses} | {notes} |"
            )
    return "\n".join(lines)


def _spread(level: dict[str, Any]) -> list[str]:
    """For a several-worker target: each worker's cores and Redis's CPU per request."""
    out = []
    workers = level.get("worker_cpu_cores")
    if workers:
        out.append("workers " + " + ".join(_f(c) for c in workers) + " cores")
    if level.get("redis_cpu_ms_per_req") is not None:
        out.append(f"redis-server {level['redis_cpu_ms_per_req']:.3f} ms/req")
    return out


def _by_name(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in results["targets"] if not t.get("skipped") and t.get("levels")}


def _level(target: dict[str, Any], concurrency: int) -> dict[str, Any] | None:
    for level in target["levels"]:
        if level["concurrency"] == concurrency:
            return level
    return None


def _common_level(a: dict[str, Any], b: dict[str, Any], prefer: int | None = None) -> int | None:
    common = sorted({lv["concurrency"] for lv in a["levels"]} & {lv["concurrency"] for lv in b["levels"]})
    if not common:
        return None
    return prefer if prefer in common else common[-1]


def _best(target: dict[str, Any]) -> dict[str, Any]:
    return max(target["levels"], key=lambda level: level["rps"])


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured ratio and whether it is met.

    CPU per request is compared at the highest concurrency both targets ran; throughput
    at each target's best level; p99 at concurrency 64 (or the highest common level).
    """
    targets = _by_name(results)
    rows: list[dict[str, Any]] = []

    def add(
        name: str,
        goal: str,
        value: Optional[float],
        ok: Optional[Callable[[float], bool]],
        detail: str,
        caveat: str = "",
    ) -> None:
        rows.append(
            {
                "name": name,
                "goal": goal,
                "value": value,
                "met": None if value is None or ok is None else bool(ok(value)),
                "detail": detail,
                "caveat": caveat,
            }
        )

    def cpu_ratio(numerator: str, denominator: str) -> tuple[float | None, str]:
        a, b = targets.get(numerator), targets.get(denominator)
        if a is None or b is None:
            return None, f"needs {numerator} and {denominator}"
        level = _common_level(a, b)
        la, lb = _level(a, level), _level(b, level)  # type: ignore[arg-type]
        if not la or not lb or not la["server_cpu_ms_per_req"] or not lb["server_cpu_ms_per_req"]:
            return None, "no CPU figures"
        return (
            la["server_cpu_ms_per_req"] / lb["server_cpu_ms_per_req"],
            f"{numerator} {la['server_cpu_ms_per_req']:.3f} ms vs {denominator} "
            f"{lb['server_cpu_ms_per_req']:.3f} ms at c={level}",
        )

    def throughput_ratio(numerator: str, denominator: str) -> tuple[float | None, str, str]:
        a, b = targets.get(numerator), targets.get(denominator)
        if a is None or b is None:
            return None, f"needs {numerator} and {denominator}", ""
        ba, bb = _best(a), _best(b)
        if not bb["rps"]:
            return None, "no throughput", ""
        caveat = ""
        if ba.get("generator_saturated") or ba.get("machine_saturated"):
            caveat = f"{numerator} at c={ba['concurrency']}: " + "; ".join(ba.get("notes") or [])
        return (
            ba["rps"] / bb["rps"],
            f"{numerator} {ba['rps']:.0f} req/s (c={ba['concurrency']}) vs {denominator} "
            f"{bb['rps']:.0f} req/s (c={bb['concurrency']})",
            caveat,
        )

    def p99_ratio(numerator: str, denominator: str) -> tuple[float | None, str]:
        a, b = targets.get(numerator), targets.get(denominator)
        if a is None or b is None:
            return None, f"needs {numerator} and {denominator}"
        level = _common_level(a, b, P99_LEVEL)
        la, lb = _level(a, level), _level(b, level)  # type: ignore[arg-type]
        if not la or not lb or not la["p99_ms"] or not lb["p99_ms"]:
            return None, "no latency figures"
        return la["p99_ms"] / lb[
            "p99_ms"
        ], f"{numerator} {la['p99_ms']:.1f} ms vs {denominator} {lb['p99_ms']:.1f} ms at c={level}"

    value, detail = cpu_ratio("grpc-async", "echo-verified")
    add(
        "gRPC (async forward) CPU/request vs bare verified echo",
        "grpc-async/echo-verified <= 1.15",
        value,
        lambda v: v <= 1.15,
        detail,
    )
    value, detail = cpu_ratio("legacy", "grpc-async")
    add("gRPC (async forward) CPU/request vs legacy", "legacy/grpc-async >= 10", value, lambda v: v >= 10, detail)
    value, detail = cpu_ratio("grpc-async", "grpc-async-nometrics")
    add(
        "Metrics on vs off, gRPC (async forward) CPU/request",
        "grpc-async/grpc-async-nometrics <= 1.05",
        value,
        lambda v: v <= 1.05,
        detail,
    )
    value, detail = cpu_ratio("grpc-inline", "grpc-async")
    add(
        "gRPC inline sync forward vs async forward, CPU/request",
        "grpc-inline/grpc-async <= 1.10",
        value,
        lambda v: v <= 1.10,
        detail,
    )
    value, detail = cpu_ratio("legacy", "http")
    add("HTTP bridge CPU/request vs legacy", "legacy/http >= 12", value, lambda v: v >= 12, detail)
    value, detail = cpu_ratio("legacy", "envoy")
    add("Envoy gRPC CPU/request vs legacy", "legacy/envoy >= 20", value, lambda v: v >= 20, detail)
    value, detail = cpu_ratio("envoy", "echo-verified")
    add(
        "Envoy gRPC CPU/request vs grpc.aio's bare verified echo",
        "envoy/echo-verified <= 0.6",
        value,
        lambda v: v <= 0.6,
        detail,
    )
    value, detail = cpu_ratio("envoy", "envoy-echo-verified")
    add("Envoy gRPC CPU/request vs the verified echo on Envoy (its floor)", "informative", value, None, detail)
    value, detail = cpu_ratio("legacy", "envoy-http")
    add("Envoy legacy HTTP CPU/request vs legacy", "legacy/envoy-http >= 15", value, lambda v: v >= 15, detail)
    value, detail = p99_ratio("envoy", "legacy")
    add("Envoy gRPC p99 at c=64 vs legacy", "envoy/legacy <= 0.1", value, lambda v: v <= 0.1, detail)
    _session_rows(add, cpu_ratio)
    value, detail = cpu_ratio("grpc", "echo-verified")
    add("gRPC (sync forward on the pool) CPU/request vs bare verified echo", "informative", value, None, detail)
    value, detail = cpu_ratio("legacy", "grpc")
    add("gRPC (sync forward on the pool) CPU/request vs legacy", "informative", value, None, detail)
    value, detail = cpu_ratio("echo-verified", "echo")
    add("Bare verified echo vs bare echo (grpc.aio's own floor)", "informative", value, None, detail)
    value, detail, caveat = throughput_ratio("grpc-async", "legacy")
    add("gRPC (async forward) throughput vs legacy", "informative", value, None, detail, caveat)
    value, detail, caveat = throughput_ratio("http", "legacy")
    add("HTTP bridge throughput vs legacy", "informative", value, None, detail, caveat)
    value, detail, caveat = throughput_ratio(SCALED, SINGLE)
    add(
        "Two workers + Redis throughput vs one process",
        "informative (scaling factor; see below)",
        value,
        None,
        detail,
        caveat,
    )
    value, detail = cpu_ratio(SCALED, SINGLE)
    add("Two workers + Redis CPU/request vs one process", "informative", value, None, detail)
    value, detail, caveat = throughput_ratio(SCALED, ONE_WORKER)
    if value is not None:
        add("Two workers vs one worker, both with Redis", "informative", value, None, detail, caveat)
    value, detail = p99_ratio("grpc-async", "legacy")
    add("gRPC (async forward) p99 at c=64 vs legacy", "informative", value, None, detail)
    value, detail = p99_ratio("http", "legacy")
    add("HTTP bridge p99 at c=64 vs legacy", "informative", value, None, detail)
    return rows


#: The several-worker target, the single process it is compared with, and (when run) one worker with Redis.
SCALED, SINGLE, ONE_WORKER = "grpc-2w-redis", "grpc", "grpc-1w-redis"


def _session_rows(add: Any, cpu_ratio: Any) -> None:
    """The ``axon-session/1`` ratios (issue 22): what a session call saves, what floods cost."""
    value, detail = cpu_ratio("envoy-session", "envoy")
    add("Session calls vs signed calls on Envoy, CPU/request", "informative", value, None, detail)
    value, detail = cpu_ratio("envoy-session", "envoy-echo-verified")
    add("Session calls on Envoy vs the verified echo on Envoy", "informative", value, None, detail)
    value, detail = cpu_ratio("grpc-async-session", "grpc-async")
    add("Session calls vs signed calls on grpc.aio, CPU/request", "informative", value, None, detail)
    value, detail = cpu_ratio("envoy-forged-mac", "envoy-forged-signature")
    add(
        "Forged-MAC flood vs forged-signature flood, CPU/request",
        "envoy-forged-mac/envoy-forged-signature < 1",
        value,
        lambda v: v < 1,
        detail,
    )
    value, detail = cpu_ratio("envoy-open", "envoy")
    add("A session open (handshake) vs a signed call on Envoy, CPU", "informative", value, None, detail)
    value, detail = cpu_ratio("envoy-open-flood", "envoy-forged-signature")
    add(
        "Open flood vs forged-signature flood, CPU/request",
        "envoy-open-flood/envoy-forged-signature <= 1",
        value,
        lambda v: v <= 1,
        detail,
    )


def scaling(results: dict[str, Any]) -> dict[str, Any] | None:
    """Two workers + Redis beside one process, level by level, and the Redis round trip.

    None when the run has no ``grpc-2w-redis`` figures. The scaling factor is the two-worker
    req/s over the single process's at the same concurrency.
    """
    targets = _by_name(results)
    scaled = targets.get(SCALED)
    if scaled is None:
        return None
    single = targets.get(SINGLE)
    one = targets.get(ONE_WORKER)
    cores = (results.get("meta", {}).get("machine") or {}).get("nproc")
    rows = []
    for level in scaled["levels"]:
        base = _level(single, level["concurrency"]) if single else None
        one_level = _level(one, level["concurrency"]) if one else None
        added = None
        if base and base.get("server_cpu_ms_per_req") is not None and level.get("server_cpu_ms_per_req") is not None:
            added = level["server_cpu_ms_per_req"] - base["server_cpu_ms_per_req"]
        rows.append(
            {
                "concurrency": level["concurrency"],
                "single_rps": base["rps"] if base else None,
                "workers_rps": level["rps"],
                "factor": level["rps"] / base["rps"] if base and base["rps"] else None,
                "single_cpu_ms_per_req": base.get("server_cpu_ms_per_req") if base else None,
                "workers_cpu_ms_per_req": level.get("server_cpu_ms_per_req"),
                "added_cpu_ms_per_req": added,
                "redis_cpu_ms_per_req": level.get("redis_cpu_ms_per_req"),
                "worker_cpu_cores": level.get("worker_cpu_cores"),
                "connections_per_worker": level.get("connections_per_worker"),
                "generator_cpu_cores": level.get("generator_cpu_cores"),
                "machine_busy_cores": level.get("machine_busy_cores"),
                "one_worker_rps": one_level["rps"] if one_level else None,
                "one_worker_cpu_ms_per_req": one_level.get("server_cpu_ms_per_req") if one_level else None,
                "factor_vs_one_worker": level["rps"] / one_level["rps"] if one_level and one_level["rps"] else None,
            }
        )
    return {
        "cores": cores,
        "levels": rows,
        "round_trip": scaled.get("redis_round_trip"),
        "compared_with": SINGLE if single else None,
        "one_worker": ONE_WORKER if one else None,
    }


def scaling_text(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return ""
    cores = summary.get("cores") or "?"
    lines = [
        (
            f"Two workers + Redis ({SCALED}) beside one process ({SINGLE}); scaling = {SCALED} req/s / {SINGLE} "
            "req/s at the same concurrency."
        ),
        (
            f"The load generator runs on the same {cores} cores as the servers (its processes' CPU is the gen cores "
            "column of the two-worker level), so the factor is what this machine gives, not what free cores would."
        ),
        "At c=1 one connection reaches one worker only.",
        "",
        (
            f"| conc | {SINGLE} req/s | {SCALED} req/s | scaling | {SINGLE} CPU ms/req | {SCALED} CPU ms/req "
            "(all workers) | added ms/req | redis-server CPU ms/req | worker cores | connections per worker "
            "| gen cores | machine busy |"
        ),
        "|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|--:|",
    ]
    for row in summary["levels"]:
        workers = " + ".join(_f(c) for c in row["worker_cpu_cores"] or []) or "-"
        connections = " + ".join(str(c) for c in row["connections_per_worker"] or []) or "-"
        single = "-" if row["single_rps"] is None else f"{row['single_rps']:.0f}"
        lines.append(
            f"| {row['concurrency']} | {single} | {row['workers_rps']:.0f} | {_f(row['factor'])}x "
            f"| {_f(row['single_cpu_ms_per_req'], 3)} | {_f(row['workers_cpu_ms_per_req'], 3)} "
            f"| {_f(row['added_cpu_ms_per_req'], 3)} | {_f(row['redis_cpu_ms_per_req'], 3)} | {workers} "
            f"| {connections} | {_f(row['generator_cpu_cores'])} | {_f(row['machine_busy_cores'])} |"
        )
    if summary.get("compared_with") is None:
        lines.append(f"(no {SINGLE} figures in this run: add {SINGLE} to --targets for the scaling factor)")
    if summary.get("one_worker"):
        lines += [
            "",
            (
                f"The same Redis store in one worker ({ONE_WORKER}) splits the figure: the store's cost alone, "
                "then what the second worker adds."
            ),
            "",
            (
                f"| conc | {ONE_WORKER} req/s | {ONE_WORKER} CPU ms/req | {SCALED} / {ONE_WORKER} | "
                f"{ONE_WORKER} CPU ms/req - {SINGLE} |"
            ),
            "|--:|--:|--:|--:|--:|",
        ]
        for row in summary["levels"]:
            if row["one_worker_rps"] is None:
                continue
            store = None
            if row["one_worker_cpu_ms_per_req"] is not None and row["single_cpu_ms_per_req"] is not None:
                store = row["one_worker_cpu_ms_per_req"] - row["single_cpu_ms_per_req"]
            lines.append(
                f"| {row['concurrency']} | {row['one_worker_rps']:.0f} | "
                f"{_f(row['one_worker_cpu_ms_per_req'], 3)} | {_f(row['factor_vs_one_worker'])}x | "
                f"{_f(store, 3)} |"
            )
    probe = summary.get("round_trip")
    lines.append("")
    if probe:
        r, m = probe["redis"], probe["in_memory"]
        redis_cpu = "-" if probe.get("redis_cpu_us") is None else f"{probe['redis_cpu_us']:.0f} us"
        lines += [
            (
                f"Redis round trip per request (measured after the levels: {probe['calls']:,} sequential "
                "check-and-store calls from the bench process to the target's redis-server, one EVALSHA each, beside "
                "the in-memory store; scripts/bench_nonce_store.py's measurement):"
            ),
            (
                f"- latency: mean {r['mean_us']:.0f} us, p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us "
                f"(in-memory: mean {m['mean_us']:.1f} us): +{probe['added_latency_us']:.0f} us per request"
            ),
            (
                f"- client CPU: {r['client_cpu_us']:.0f} us per call (in-memory {m['client_cpu_us']:.1f} us): "
                f"+{probe['added_client_cpu_us']:.0f} us per request in the worker, when calls do not overlap"
            ),
            f"- redis-server CPU: {redis_cpu} per call",
        ]
    else:
        lines.append("Redis round trip per request: not measured (the probe did not run)")
    loaded = [row for row in summary["levels"] if row["added_cpu_ms_per_req"] is not None and row["concurrency"] > 1]
    if loaded:
        row = loaded[-1]
        text = (
            f"- under load (c={row['concurrency']}): the two workers spend {row['added_cpu_ms_per_req']:+.3f} ms "
            f"of CPU per request more than the single process (Redis client, several processes), and "
            f"redis-server {_f(row['redis_cpu_ms_per_req'], 3)} ms"
        )
        if row["one_worker_cpu_ms_per_req"] is not None and row["single_cpu_ms_per_req"] is not None:
            text += (
                f"; one worker with the same store spends "
                f"{row['one_worker_cpu_ms_per_req'] - row['single_cpu_ms_per_req']:+.3f} ms"
            )
        lines.append(text)
    return "\n".join(lines)


def ratios_text(rows: list[dict[str, Any]]) -> str:
    lines = ["| ratio | goal | measured | verdict | from |", "|---|---|--:|---|---|"]
    for row in rows:
        verdict = {True: "met", False: "NOT met", None: "n/a"}[row["met"]]
        detail = row["detail"] + (f" ({row['caveat']})" if row.get("caveat") else "")
        lines.append(f"| {row['name']} | {row['goal']} | {_f(row['value'])} | {verdict} | {detail} |")
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    return path
