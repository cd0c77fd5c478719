#!/usr/bin/env python3
"""Render docs/metrics-dashboard.png: the Grafana dashboard's main panels, drawn with
matplotlib from real scrapes of a real axon under a scripted load.

    python scripts/metrics_dashboard.py [--seconds 40] [--out docs/metrics-dashboard.png]

An axon (sync forward with a blacklist, 2 workers, a queue of 4) serves on loopback; for
``--seconds`` a Dendrite sends calls in phases (steady load, blacklisted inputs, replayed
nonces, a burst past the queue), while ``GET /metrics`` is scraped every second. Each
panel is the dashboard's query computed from those scrapes (rates over 5 s, quantiles
from histogram buckets). Needs the bench extra (matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

from prometheus_client.parser import text_string_to_metric_families

from axon_grpc import Dendrite, Synapse
from axon_grpc.auth.wallet import KeypairWallet
from axon_grpc.testing import build_axon

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 5  # seconds a rate is taken over


class Work(Synapse):
    input: int
    output: Optional[int] = None


def work_forward(synapse: Work) -> Work:
    time.sleep(0.002 + (synapse.input % 7) * 0.003)
    synapse.output = synapse.input * 2
    return synapse


def work_blacklist(synapse: Work) -> tuple[bool, str]:
    return synapse.input % 100 == 13, "unlucky"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(sample: dict[Any, float], name: str, by: str | None = None, **match: str) -> dict[str, float]:
    """``sum by (by) (name{match})`` of one scrape."""
    sums: dict[str, float] = {}
    for (metric, labels), value in sample.items():
        found = dict(labels)
        if metric != name or any(found.get(k) != v for k, v in match.items()):
            continue
        key = found.get(by, "") if by else ""
        sums[key] = sums.get(key, 0.0) + value
    return sums


def quantile(q: float, buckets: dict[str, float]) -> float | None:
    """``histogram_quantile`` over cumulative bucket increases by ``le``."""
    points = sorted((float(le), count) for le, count in buckets.items())
    if not points or points[-1][1] <= 0:
        return None
    rank, previous_le, previous_count = q * points[-1][1], 0.0, 0.0
    for le, count in points:
        if count >= rank:
            if le == float("inf"):
                return previous_le
            width = count - previous_count
            return previous_le + (le - previous_le) * ((rank - previous_count) / width if width else 0.0)
        previous_le, previous_count = le, count
    return None


async def drive(axon: Any, seconds: float) -> None:
    info = axon.info()
    async with Dendrite(wallet=KeypairWallet.generate()) as dendrite:
        started = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - started) < seconds:
            phase = elapsed / seconds
            n += 1
            if 0.30 < phase < 0.45:  # blacklisted callers show up
                await asyncio.gather(*(dendrite.call(info, Work(input=i * 100 + 13), timeout=5) for i in range(3)))
            if 0.55 < phase < 0.70:  # a burst past the queue: shed
                await asyncio.gather(*(dendrite.call(info, Work(input=i), timeout=5) for i in range(14)))
            if 0.80 < phase < 0.90:  # tight deadlines: some expire
                await asyncio.gather(*(dendrite.call(info, Work(input=6), timeout=0.012) for _ in range(4)))
            await asyncio.gather(*(dendrite.call(info, Work(input=n * 10 + i), timeout=5) for i in range(4)))
            await asyncio.sleep(0.02)


def render(series: list[tuple[float, dict[Any, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = series[0][0]
    fig, axes = plt.subplots(3, 2, figsize=(14, 11))
    fig.suptitle("axon-grpc: the Grafana dashboard's panels from real scrapes of a running axon", fontsize=13)

    def rates(name: str, by: str | None, **match: str) -> tuple[list[float], dict[str, list[float]]]:
        times, lines = [], {}
        for i in range(WINDOW, len(series)):
            (t1, now), (t0_, then) = series[i], series[i - WINDOW]
            a, b = total(now, name, by, **match), total(then, name, by, **match)
            times.append(t1 - t0)
            for key in set(a) | set(lines):
                lines.setdefault(key, [0.0] * (len(times) - 1)).append((a.get(key, 0) - b.get(key, 0)) / (t1 - t0_))
        return times, lines

    def panel(ax: Any, title: str, times: list[float], lines: dict[str, list[float]], unit: str) -> None:
        for key, values in sorted(lines.items()):
            ax.plot(times[-len(values) :], values, label=key or "total")
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_xlabel("seconds")
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize=8, loc="upper left")

    times, lines = rates("axon_requests_total", "status_class", synapse="Work")
    panel(axes[0][0], "Requests by status class  (rate(axon_requests_total))", times, lines, "req/s")
    times, lines = rates("axon_refusals_total", "reason", synapse="Work")
    panel(axes[0][1], "Refusals by reason  (rate(axon_refusals_total))", times, lines, "req/s")

    quantiles: dict[str, list[float]] = {"p50": [], "p90": [], "p99": []}
    qtimes = []
    for i in range(WINDOW, len(series)):
        a = total(series[i][1], "axon_request_duration_seconds_bucket", "le", synapse="Work")
        b = total(series[i - WINDOW][1], "axon_request_duration_seconds_bucket", "le", synapse="Work")
        increase = {le: a[le] - b.get(le, 0) for le in a}
        qtimes.append(series[i][0] - t0)
        for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            value = quantile(q, increase)
            quantiles[label].append(value * 1e3 if value is not None else float("nan"))
    panel(axes[1][0], "Call latency  (histogram_quantile over axon_request_duration_seconds)", qtimes, quantiles, "ms")

    gauge_times = [t - t0 for t, _ in series]
    depth = {
        "queue depth": [total(s, "axon_admission_queue_depth").get("", 0) for _, s in series],
        "workers busy": [total(s, "axon_workers_busy").get("", 0) for _, s in series],
    }
    panel(axes[1][1], "Admission  (axon_admission_queue_depth, axon_workers_busy)", gauge_times, depth, "requests")

    times, lines = rates("axon_admission_shed_total", None)
    expired = rates("axon_admission_expired_total", None)[1]
    panel(
        axes[2][0],
        "Shed and expired  (rate(axon_admission_{shed,expired}_total))",
        times,
        {"shed": lines.get("", []), "expired": expired.get("", [])},
        "req/s",
    )

    health = {"healthy (memory)": [total(s, "axon_nonce_store_healthy", store="memory").get("", 0) for _, s in series]}
    checks = rates("axon_nonce_checks_total", "verdict")[1]
    ax = axes[2][1]
    panel(ax, "Nonce store: checks by verdict, health", times, checks, "checks/s")
    twin = ax.twinx()
    twin.plot(gauge_times, health["healthy (memory)"], color="black", linestyle=":", label="healthy")
    twin.set_ylim(-0.1, 1.1)
    twin.set_ylabel("healthy (0/1)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "metrics-dashboard.png"))
    args = parser.parse_args()
    axon = build_axon(
        {"forward_fn": work_forward, "blacklist_fn": work_blacklist}, http_port=0, max_workers=2, max_queue=4
    )
    axon.start()
    series: list[tuple[float, dict[Any, float]]] = []
    try:
        import threading

        done = threading.Event()

        def load() -> None:
            asyncio.run(drive(axon, args.seconds))
            done.set()

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        while not done.is_set():
            series.append((time.monotonic(), scrape(int(axon.http_port))))
            done.wait(1.0)
        series.append((time.monotonic(), scrape(int(axon.http_port))))
    finally:
        axon.stop()
    render(series, Path(args.out))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
