"""Run the levels: spawn the generators, read CPU times around the window, gather figures."""

from __future__ import annotations

import array
import multiprocessing
import os
import queue
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from .load import GeneratorSpec, generator_main
from .procstat import machine_cpu_seconds, process_cpu_seconds
from .targets import Target

#: A generator process whose CPU reaches this share of a core is reported as saturated.
SATURATION = 0.9
#: Other processes using this many cores during a window get a note (the figures are noisy).
BACKGROUND_WARNING = 0.25


@dataclass
class Options:
    concurrency: list[int] = field(default_factory=lambda: [1, 16, 64])
    duration: float = 5.0
    warmup: float = 1.0
    generators: int = 2
    channels: int = 4
    request_timeout: float = 10.0


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not ordered:
        return None
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


class Progress:
    """One self-rewriting line on stderr (a plain line per step when stderr is not a terminal)."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.width = 0

    def update(self, label: str, done: float, total: float, requests: int) -> None:
        if not (self.enabled and self.tty):
            return
        share = min(1.0, max(0.0, done / total)) if total else 1.0
        filled = int(share * 24)
        line = f"\r{label:<34} [{'#' * filled}{'.' * (24 - filled)}] {done:4.1f}/{total:.1f} s {requests:>9,} req"
        self.width = max(self.width, len(line))
        self.stream.write(line.ljust(self.width))
        self.stream.flush()

    def finish(self, label: str, summary: str) -> None:
        if not self.enabled:
            return
        text = f"{label:<34} {summary}"
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width) + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.width = 0


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def run_level(
    target: Target, concurrency: int, options: Options, progress: Progress, on_window: tuple[Any, Any] | None = None
) -> dict[str, Any]:
    """Drive ``target`` at ``concurrency`` requests in flight; the figures of the window.

    ``on_window`` = (callable at window start, callable at window end), e.g. to start and
    stop a profiler in the server.
    """
    ctx = multiprocessing.get_context("spawn")
    processes = min(options.generators, concurrency)
    ready, results = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    t0 = ctx.Value("d", 0.0)
    counters = [ctx.Value("Q", 0, lock=False) for _ in range(processes)]
    procs = []
    for index, loops in enumerate(_split(concurrency, processes)):
        spec = GeneratorSpec(
            index=index,
            transport=target.transport,
            host=target.host,
            port=target.port,
            axon_hotkey=target.hotkey,
            loops=loops,
            channels=max(options.channels, target.workers),
            warmup=options.warmup,
            duration=options.duration,
            request_timeout=options.request_timeout,
            workers=target.workers,
            load=target.load,
        )
        proc = ctx.Process(
            target=generator_main,
            args=(spec.to_dict(), ready, go, t0, counters[index], results),
            name=f"bench-gen-{index}",
            daemon=True,
        )
        proc.start()
        procs.append(proc)
    label = f"{target.name} c={concurrency}"
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < processes:
            try:
                seen.add(ready.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise RuntimeError(f"load generators for {label} did not start within 60 s") from None
        start = time.monotonic() + 0.05
        t0.value = start
        go.set()
        window_start, window_end = start + options.warmup, start + options.warmup + options.duration
        total = options.warmup + options.duration

        def wait_until(moment: float) -> None:
            while True:
                left = moment - time.monotonic()
                if left <= 0:
                    return
                time.sleep(min(0.2, left))
                progress.update(label, time.monotonic() - start, total, sum(c.value for c in counters))

        wait_until(window_start)
        if on_window:
            on_window[0]()
        before = _cpu_snapshot(target, procs)
        wait_until(window_end)
        after = _cpu_snapshot(target, procs)
        if on_window:
            on_window[1]()
        outs = []
        for _ in procs:
            try:
                outs.append(results.get(timeout=options.request_timeout + 30))
            except queue.Empty:
                raise RuntimeError(f"load generators for {label} did not report") from None
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise RuntimeError(f"load generator failed for {label}: {errors[0]}")
    figures = _figures(target, concurrency, processes, options, outs, before, after)
    progress.finish(
        label,
        f"{figures['rps']:>8.0f} req/s  p99 {_ms(figures['p99_ms'])}  "
        f"server {_ms(figures['server_cpu_ms_per_req'])}/req",
    )
    return figures


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _cpu_snapshot(target: Target, procs: list[Any]) -> dict[str, Any]:
    servers = [process_cpu_seconds(pid) for pid in target.server_pids]
    return {
        "at": time.monotonic(),
        # Every server process (the one started and its workers); None if any cannot be read.
        "server": sum(servers) if servers and None not in servers else None,  # type: ignore[arg-type]
        "workers": [process_cpu_seconds(pid) for pid in target.worker_pids],
        "aux": {name: process_cpu_seconds(pid) for name, pid in target.aux_pids.items()},
        "generators": [process_cpu_seconds(p.pid) for p in procs],
        "machine": machine_cpu_seconds(),
    }


def _delta_cores(before: float | None, after: float | None, window: float) -> float | None:
    return (after - before) / window if before is not None and after is not None and window > 0 else None


def _figures(
    target: Target,
    concurrency: int,
    processes: int,
    options: Options,
    outs: list[dict[str, Any]],
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    latencies = array.array("d")
    statuses: dict[str, int] = {}
    for out in outs:
        latencies.frombytes(out["latencies"])
        for status, count in out["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    ordered = sorted(latencies)
    window = after["at"] - before["at"]  # when the CPU times were read
    ok = len(ordered)
    answered = sum(statuses.values())  # completed inside the nominal window
    answered_rate = answered / options.duration
    figures: dict[str, Any] = {
        "concurrency": concurrency,
        "window_s": round(window, 3),
        "requests": answered,
        "ok": ok,
        "rps": ok / options.duration,
        "statuses": dict(sorted(statuses.items())),
        "errors": answered - ok,
        "p50_ms": _scaled(percentile(ordered, 50)),
        "p90_ms": _scaled(percentile(ordered, 90)),
        "p99_ms": _scaled(percentile(ordered, 99)),
        "mean_ms": _scaled(sum(ordered) / ok if ok else None),
        "max_ms": _scaled(ordered[-1] if ordered else None),
        "generator_processes": processes,
    }
    server = None
    if before["server"] is not None and after["server"] is not None:
        server = after["server"] - before["server"]
    figures["server_cpu_cores"] = server / window if server is not None and window > 0 else None
    figures["server_cpu_ms_per_req"] = (
        figures["server_cpu_cores"] * 1e3 / answered_rate if server is not None and answered_rate else None
    )
    generator_cpu = [
        (a - b) / window if a is not None and b is not None and window > 0 else None
        for a, b in zip(after["generators"], before["generators"])
    ]
    known = [g for g in generator_cpu if g is not None]
    if before["workers"]:
        # How the load spread over the workers: each one's CPU, and the connections each got.
        figures["worker_cpu_cores"] = [_delta_cores(b, a, window) for b, a in zip(before["workers"], after["workers"])]
        per_worker: dict[str, int] = {}
        for out in outs:
            for worker, count in (out.get("connections_per_worker") or {}).items():
                per_worker[worker] = per_worker.get(worker, 0) + count
        figures["connections_per_worker"] = sorted(per_worker.values(), reverse=True)
    aux_cores = 0.0
    for name in before["aux"]:
        cores = _delta_cores(before["aux"][name], after["aux"].get(name), window)
        figures[f"{name}_cpu_cores"] = cores
        figures[f"{name}_cpu_ms_per_req"] = cores * 1e3 / answered_rate if cores is not None and answered_rate else None
        aux_cores += cores or 0.0
    figures["generator_cpu_cores"] = sum(known) if known else None
    figures["generator_cpu_ms_per_req"] = sum(known) * 1e3 / answered_rate if known and answered_rate else None
    figures["generator_max_process_cpu"] = max(known) if known else None
    machine = stolen = None
    if before["machine"] and after["machine"] and window > 0:
        machine = (after["machine"][0] - before["machine"][0]) / window
        stolen = (after["machine"][1] - before["machine"][1]) / window
    figures["machine_busy_cores"] = machine
    figures["stolen_cores"] = stolen
    # CPU used by anything else on the machine during the window (a noisy neighbour).
    background = None
    if machine is not None and figures["server_cpu_cores"] is not None and known:
        background = max(0.0, machine - figures["server_cpu_cores"] - sum(known) - aux_cores)
    figures["background_cores"] = background
    notes = []
    if background is not None and background >= BACKGROUND_WARNING:
        notes.append(f"other processes used {background:.2f} cores during the window")
    if stolen is not None and stolen >= BACKGROUND_WARNING:
        notes.append(f"the hypervisor stole {stolen:.2f} cores during the window")
    if known and max(known) >= SATURATION:
        notes.append(f"generator saturated ({max(known) * 100:.0f}% of a core in one process)")
    cores = os.cpu_count() or 1
    if machine is not None and machine >= SATURATION * cores:
        notes.append(f"machine saturated ({machine:.2f} of {cores} cores busy)")
    shares = [c for c in figures.get("worker_cpu_cores") or [] if c is not None]
    if len(shares) > 1 and sum(shares) > 0 and min(shares) < 0.35 * sum(shares) and concurrency >= 2 * len(shares):
        connections = " + ".join(str(c) for c in figures.get("connections_per_worker") or []) or "?"
        notes.append(
            "worker CPU uneven (" + " + ".join(f"{c:.2f}" for c in shares) + f" cores; connections {connections})"
        )
    figures["generator_saturated"] = bool(known and max(known) >= SATURATION)
    figures["machine_saturated"] = bool(machine is not None and machine >= SATURATION * cores)
    figures["notes"] = notes
    return figures


def _scaled(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def profile_window(target: Target) -> tuple[Any, Any]:
    """Callables that start and stop the cProfile of a server started with ``--cprofile``."""
    return (lambda: target.signal(signal.SIGUSR1), lambda: target.signal(signal.SIGUSR2))
