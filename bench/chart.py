"""The latency-versus-load chart (PNG; needs matplotlib, the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {
    "grpc": "#1f77b4",
    "grpc-async": "#17becf",
    "grpc-async-nometrics": "#9edae5",
    "grpc-inline": "#e377c2",
    "envoy": "#ff7f0e",
    "envoy-echo-verified": "#ffbb78",
    "envoy-http": "#98df8a",
    "grpc-1w-redis": "#bcbd22",
    "grpc-2w-redis": "#8c564b",
    "http": "#2ca02c",
    "echo": "#7f7f7f",
    "echo-verified": "#9467bd",
    "legacy": "#d62728",
    "external": "#ff7f0e",
}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_chart(results: dict[str, Any], path: Path) -> Path:
    """Three panels over the concurrency levels: p50/p99 latency vs throughput, throughput,
    and server CPU per request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, rps, cpu) = plt.subplots(1, 3, figsize=(16, 5))
    for target in results["targets"]:
        levels = [level for level in target.get("levels") or [] if level["ok"]]
        if not levels:
            continue
        color = COLORS.get(target["name"])
        conc = [level["concurrency"] for level in levels]
        through = [level["rps"] for level in levels]
        lat.plot(through, [level["p99_ms"] for level in levels], "-o", color=color, label=f"{target['label']} p99")
        lat.plot(
            through,
            [level["p50_ms"] for level in levels],
            "--",
            marker=".",
            color=color,
            alpha=0.6,
            label=f"{target['label']} p50",
        )
        for x, y, c in zip(through, [level["p99_ms"] for level in levels], conc):
            lat.annotate(f"c={c}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7, color=color)
        rps.plot(conc, through, "-o", color=color, label=target["label"])
        cpu.plot(conc, [level["server_cpu_ms_per_req"] for level in levels], "-o", color=color, label=target["label"])
    lat.set(
        xlabel="throughput (requests/s)",
        ylabel="latency (ms)",
        title="Latency vs load (p99 solid, p50 dashed)",
        xscale="log",
        yscale="log",
    )
    rps.set(
        xlabel="concurrency (requests in flight)", ylabel="requests/s", title="Throughput", xscale="log", yscale="log"
    )
    cpu.set(
        xlabel="concurrency (requests in flight)",
        ylabel="ms of server CPU per request",
        title="Server CPU per request",
        xscale="log",
        yscale="log",
    )
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    levels = sorted({level["concurrency"] for t in results["targets"] for level in t.get("levels") or []})
    for axis in (lat, rps, cpu):
        axis.grid(True, which="both", alpha=0.3)
        axis.xaxis.set_major_formatter(plain)
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(NullFormatter())
    for axis in (rps, cpu):
        if levels:
            axis.set_xticks(levels)
        axis.xaxis.set_minor_formatter(NullFormatter())
    cpu.yaxis.set_minor_formatter(
        FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}".lstrip("0.")[:1] in ("2", "3", "5") else "")
    )
    lat.legend(fontsize=7)
    cpu.legend(fontsize=8)
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    fig.suptitle(
        f"python -m bench: {machine.get('nproc')} cores {machine.get('cpu_model')}, Python {machine.get('python')}, "
        f"grpcio {machine.get('grpcio')}; {meta.get('options', {}).get('duration')} s per level",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
