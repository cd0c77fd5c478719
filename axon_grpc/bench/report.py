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
    header = ("| target | conc | req/s | p50 ms | p90 ms | p99 ms | server CPU ms/req | server cores "
              "| gen cores | statuses | notes |")
    lines = [header, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|"]
    for target in results["targets"]:
        if target.get("skipped"):
            lines.append(f"| {target['label']} | - | - | - | - | - | - | - | - | skipped | {target['skipped']} |")
            continue
        for level in target["levels"]:
            statuses = " ".join(f"{k}:{v}" for k, v in level["statuses"].items()) or "-"
            notes = "; ".join(level.get("notes") or [])
            lines.append(
                f"| {target['label']} | {level['concurrency']} | {level['rps']:.0f} | {_f(level['p50_ms'])} "
                f"| {_f(level['p90_ms'])} | {_f(level['p99_ms'])} | {_f(level['server_cpu_ms_per_req'], 3)} "
                f"| {_f(level['server_cpu_cores'])} | {_f(level['generator_cpu_cores'])} | {statuses} | {notes} |"
            )
    return "\n".join(lines)


def _by_name(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in results["targets"] if not t.get("skipped") and t.get("levels")}


def _level(target: dict[str, Any], concurrency: int) -> dict[str, Any] | None:
    for level in target["levels"]:
        if level["concurrency"] == concurrency:
            return level
    return None


def _common_level(a: dict[str, Any], b: dict[str, Any], prefer: int | None = None) -> int | None:
    common = sorted({l["concurrency"] for l in a["levels"]} & {l["concurrency"] for l in b["levels"]})
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

    def add(name: str, goal: str, value: Optional[float], ok: Optional[Callable[[float], bool]], detail: str,
            caveat: str = "") -> None:
        rows.append({
            "name": name, "goal": goal, "value": value,
            "met": None if value is None or ok is None else bool(ok(value)),
            "detail": detail, "caveat": caveat,
        })

    def cpu_ratio(numerator: str, denominator: str) -> tuple[float | None, str]:
        a, b = targets.get(numerator), targets.get(denominator)
        if a is None or b is None:
            return None, f"needs {numerator} and {denominator}"
        level = _common_level(a, b)
        la, lb = _level(a, level), _level(b, level)  # type: ignore[arg-type]
        if not la or not lb or not la["server_cpu_ms_per_req"] or not lb["server_cpu_ms_per_req"]:
            return None, "no CPU figures"
        return (la["server_cpu_ms_per_req"] / lb["server_cpu_ms_per_req"],
                f"{numerator} {la['server_cpu_ms_per_req']:.3f} ms vs {denominator} "
                f"{lb['server_cpu_ms_per_req']:.3f} ms at c={level}")

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
        return (ba["rps"] / bb["rps"],
                f"{numerator} {ba['rps']:.0f} req/s (c={ba['concurrency']}) vs {denominator} "
                f"{bb['rps']:.0f} req/s (c={bb['concurrency']})", caveat)

    def p99_ratio(numerator: str, denominator: str) -> tuple[float | None, str]:
        a, b = targets.get(numerator), targets.get(denominator)
        if a is None or b is None:
            return None, f"needs {numerator} and {denominator}"
        level = _common_level(a, b, P99_LEVEL)
        la, lb = _level(a, level), _level(b, level)  # type: ignore[arg-type]
        if not la or not lb or not la["p99_ms"] or not lb["p99_ms"]:
            return None, "no latency figures"
        return la["p99_ms"] / lb["p99_ms"], f"{numerator} {la['p99_ms']:.1f} ms vs {denominator} {lb['p99_ms']:.1f} ms at c={level}"

    value, detail = cpu_ratio("legacy", "grpc")
    add("gRPC CPU/request vs legacy", "legacy/grpc >= 12", value, lambda v: v >= 12, detail)
    value, detail = cpu_ratio("grpc", "echo-verified")
    add("gRPC CPU/request vs bare verified echo", "grpc/echo-verified <= 1.5", value, lambda v: v <= 1.5, detail)
    value, detail = cpu_ratio("legacy", "grpc-async")
    add("gRPC (async forward) CPU/request vs legacy", "legacy/grpc-async >= 12", value, lambda v: v >= 12, detail)
    value, detail = cpu_ratio("grpc-async", "echo-verified")
    add("gRPC (async forward) CPU/request vs bare verified echo", "grpc-async/echo-verified <= 1.5", value,
        lambda v: v <= 1.5, detail)
    value, detail = cpu_ratio("grpc", "echo")
    add("gRPC CPU/request vs bare echo (ceiling)", "informative", value, None, detail)
    value, detail, caveat = throughput_ratio("grpc", "legacy")
    add("gRPC throughput vs legacy", "grpc/legacy >= 10 (or the generator's cap)", value, lambda v: v >= 10,
        detail, caveat)
    value, detail = cpu_ratio("legacy", "http")
    add("HTTP bridge CPU/request vs legacy", "legacy/http >= 10", value, lambda v: v >= 10, detail)
    value, detail, caveat = throughput_ratio("http", "legacy")
    add("HTTP bridge throughput vs legacy", "http/legacy >= 8", value, lambda v: v >= 8, detail, caveat)
    value, detail, caveat = throughput_ratio("grpc-async", "legacy")
    add("gRPC (async forward) throughput vs legacy", "grpc-async/legacy >= 10 (or the generator's cap)", value,
        lambda v: v >= 10, detail, caveat)
    value, detail = p99_ratio("grpc", "legacy")
    add("gRPC p99 at c=64 vs legacy", "grpc/legacy <= 0.1", value, lambda v: v <= 0.1, detail)
    value, detail = p99_ratio("grpc-async", "legacy")
    add("gRPC (async forward) p99 at c=64 vs legacy", "grpc-async/legacy <= 0.1", value, lambda v: v <= 0.1, detail)
    value, detail = p99_ratio("http", "legacy")
    add("HTTP bridge p99 at c=64 vs legacy", "http/legacy <= 0.1", value, lambda v: v <= 0.1, detail)
    return rows


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
