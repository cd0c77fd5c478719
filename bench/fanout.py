"""``python -m bench --dendrite``: a validator's step at scale, this Dendrite against the SDK 10.5.0 one.

A fleet process (:mod:`~bench.fleet`) serves ``axons`` axons on loopback, a
tenth (``dead_fraction``) of which accept connections and never answer. Each client runs
in its own process (:mod:`~bench.fanout_client`): this Dendrite over gRPC and
over the legacy HTTP protocol, and the SDK 10.5.0 Dendrite (HTTP, from ``legacy_python``)
when that interpreter exists. Each measures its own CPU per call over warm steps to the
answering axons, the wall time of steps to every axon (goal: the timeout plus a small
constant), its sockets after the first and the last step, and its memory per axon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def start_fleet(live: int, dead: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.fleet", "--live", str(live), "--dead", str(dead)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("BENCH-READY "):
        process.kill()
        raise RuntimeError(f"the fleet did not start (exit status {process.poll()})")
    return process, json.loads(line.split(" ", 1)[1])


def run_client(
    python: str, client: str, transport: str, fleet: dict[str, Any], *, steps: int, timeout: float
) -> dict[str, Any]:
    ports = fleet["grpc"] if transport == "grpc" else fleet["http"]
    command = [
        python,
        str(HERE / "fanout_client.py"),
        "--client",
        client,
        "--transport",
        transport,
        "--hotkey",
        fleet["hotkey"],
        "--live",
        ",".join(map(str, ports)),
        "--dead",
        ",".join(map(str, fleet["dead"])),
        "--steps",
        str(steps),
        "--timeout",
        str(timeout),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    if done.returncode != 0:
        return {"client": client, "transport": transport, "error": done.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_fanout(
    axons: int, dead_fraction: float, timeout: float, steps: int, legacy_python: Path | None
) -> dict[str, Any]:
    dead = round(axons * dead_fraction)
    process, fleet = start_fleet(axons - dead, dead)
    try:
        runs = [run_client(sys.executable, "ours", t, fleet, steps=steps, timeout=timeout) for t in ("grpc", "http")]
        if legacy_python is not None and legacy_python.exists():
            runs.append(run_client(str(legacy_python), "sdk", "http", fleet, steps=steps, timeout=timeout))
        else:
            runs.append(
                {"client": "sdk", "transport": "http", "error": f"no bittensor==10.5.0 Python at {legacy_python}"}
            )
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    return {"axons": axons, "dead": dead, "timeout_s": timeout, "steps": steps, "runs": runs}


def fanout_text(figures: dict[str, Any]) -> str:
    lines = [
        f"Dendrite fan-out: {figures['axons']} axons on loopback, {figures['dead']} never answer, "
        f"timeout {figures['timeout_s']} s, {figures['steps']} steps to the answering ones",
        f"{'client':<22}{'CPU ms/call':>12}{'1st step':>10}{'ok':>12}{'step wall s':>14}{'sockets 1st/last':>18}"
        f"{'KiB/axon':>10}",
    ]
    sdk = next((r for r in figures["runs"] if r["client"] == "sdk" and "error" not in r), None)
    for r in figures["runs"]:
        name = f"{'this Dendrite' if r['client'] == 'ours' else 'SDK 10.5.0 Dendrite'} {r['transport']}"
        if "error" in r:
            lines.append(f"{name:<22}  skipped: {r['error']}")
            continue
        walls = "/".join(f"{w:.2f}" for w in r["fanout_wall_s"])
        lines.append(
            f"{name:<22}{r['cpu_ms_per_call']:>12.3f}{r['cpu_ms_per_call_first_step']:>10.3f}"
            f"{r['ok']:>6}/{r['calls']:<5}{walls:>14}"
            f"{r['sockets_after_first_step']:>9}/{r['sockets_after_last_step']:<8}{r['rss_kib_per_axon']:>10.1f}"
        )
    if sdk is not None:
        for r in figures["runs"]:
            if r["client"] == "ours" and "error" not in r:
                lines.append(
                    f"CPU per call, SDK 10.5.0 / this Dendrite over {r['transport']}: "
                    f"{sdk['cpu_ms_per_call'] / r['cpu_ms_per_call']:.1f}x (goal >= 10x)"
                )
    return "\n".join(lines)
