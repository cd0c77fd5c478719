"""Summaries of a server profile (cProfile stats of the serving loop's thread)."""

from __future__ import annotations

import pstats
from pathlib import Path
from typing import Any

#: Functions where the loop thread waits for work (not CPU spent on requests).
IDLE = (
    "method 'poll' of 'select.epoll'",
    "method 'select' of 'select.",
    "built-in method select.",
    "_poll_wrapper",
    "method 'control' of 'select.kqueue'",
)

#: Buckets for a coarse "where does the time go", by file path or function name fragment.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("sr25519 sign+verify", ("sr25519", "nacl")),
    ("pydantic validation/serialization", ("pydantic", "model_validate", "__pydantic", "validate_assignment")),
    (
        "protobuf (de)serialization",
        ("google/protobuf", "_convert.py", "SerializeToString", "FromString", "ParseFromString"),
    ),
    ("grpc.aio Cython/C-core (per call)", ("grpc/_cython", "cygrpc", "grpc/aio", "grpc/_", "grpc\\")),
    ("asyncio machinery", ("asyncio/", "_asyncio", "contextvars")),
    ("thread pool hop (sync forward)", ("concurrent/futures", "threading.py", "scheduler.py", "queue.py")),
    ("axon_grpc pipeline/transport", ("axon_grpc/",)),
    ("logging", ("logging/",)),
]


def _name(func: tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name
    short = path
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in short:
            short = short.split(marker, 1)[1]
    return f"{short}:{line}({name})"


def _is_idle(label: str) -> bool:
    return any(fragment in label for fragment in IDLE)


def summarize(path: Path, level: dict[str, Any] | None = None, top: int = 15, target: str = "grpc") -> dict[str, Any]:
    """Top functions by own time and by cumulative time, as shares of the busy time."""
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    idle = 0.0
    total = 0.0
    for func, (_cc, nc, tt, ct, _callers) in raw.items():
        label = _name(func)
        if _is_idle(label):
            idle += tt
            continue
        total += tt
        rows.append((label, nc, tt, ct))
    requests = (level or {}).get("requests") or 0
    by_own = sorted(rows, key=lambda r: r[2], reverse=True)[:top]
    by_cum = sorted(rows, key=lambda r: r[3], reverse=True)
    buckets: dict[str, float] = {}
    for label, _, tt, _ in rows:
        bucket = next((b for b, fragments in BUCKETS if any(f in label for f in fragments)), "other")
        buckets[bucket] = buckets.get(bucket, 0.0) + tt

    def pct(value: float) -> float:
        return round(100.0 * value / total, 1) if total else 0.0

    out: dict[str, Any] = {
        "tool": "cprofile",
        "target": target,
        "busy_s": round(total, 3),
        "idle_s": round(idle, 3),
        "requests": requests,
        "busy_us_per_request": round(total * 1e6 / requests, 1) if requests else None,
        "top_own": [{"function": f, "calls": n, "own_s": round(t, 4), "own_pct": pct(t)} for f, n, t, _ in by_own],
        "top_cumulative": [
            {"function": f, "calls": n, "cum_s": round(c, 4), "cum_pct": pct(c)}
            for f, n, _, c in by_cum
            if not f.startswith("<") and "run_forever" not in f and "_run_once" not in f
        ][:top],
        "buckets": [{"bucket": b, "own_pct": pct(t)} for b, t in sorted(buckets.items(), key=lambda kv: -kv[1])],
    }
    out["text"] = summary_text(out)
    return out


def summary_text(p: dict[str, Any]) -> str:
    lines = [
        f"profile of the {p.get('target', 'grpc')} server's loop thread (cProfile, wall time while busy; "
        f"{p['busy_s']} s busy, {p['idle_s']} s waiting; {p['requests']} requests; "
        f"{p['busy_us_per_request']} us busy per request under the profiler):",
        "  by bucket (own time): " + ", ".join(f"{b['bucket']} {b['own_pct']}%" for b in p["buckets"]),
        "  top functions by own time:",
    ]
    lines += [f"    {r['own_pct']:5.1f}%  {r['calls']:>8}  {r['function']}" for r in p["top_own"]]
    lines.append("  top functions by cumulative time:")
    lines += [f"    {r['cum_pct']:5.1f}%  {r['calls']:>8}  {r['function']}" for r in p["top_cumulative"]]
    return "\n".join(lines)


# -- py-spy (sampling, every thread of the server process) ------------------------------------


def py_spy_binary() -> str | None:
    """The ``py-spy`` executable beside this Python, else on PATH (the ``bench`` extra installs it)."""
    import shutil
    import sys

    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def py_spy_command(binary: str, pid: int, seconds: float, out: Path, rate: int = 200) -> list[str]:
    """Sample ``pid`` without pausing it (``--nonblocking``), every thread, as collapsed stacks."""
    return [
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--threads",
        "--nonblocking",
        "-o",
        str(out),
    ]


#: Leaf frames that stand for time in C called from them: the grpc.aio Cython/C-core work run by
#: event-loop callbacks, and C code run by a thread's target.
C_FROM_PYTHON = {
    "Handle._run": "C called from loop callbacks (grpc.aio Cython/C-core, coroutine steps)",
    "Thread.run": "C run by a thread's target (grpc.aio poller)",
}


#: Leaf functions where a thread waits (py-spy's --nonblocking sampling can count them as active).
PY_SPY_IDLE = {
    "Condition.wait",
    "EpollSelector.select",
    "Event.wait",
    "Queue.get",
    "SimpleQueue.get",
    "select",
    "_worker",
    "Lock.acquire",
}


def _function(frame: str) -> str:
    return frame.split(" (", 1)[0]


def summarize_py_spy(
    path: Path, level: dict[str, Any] | None = None, top: int = 15, target: str = "grpc"
) -> dict[str, Any]:
    """Shares of the samples by thread, by leaf function (own time) and by any frame on the stack."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    threads: dict[str, int] = {}
    buckets: dict[str, int] = {}
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        frames = [f for f in frames if not f.startswith(("thread", "process"))]
        if not frames:
            continue
        if _function(frames[-1]) in PY_SPY_IDLE:
            idle += count
            continue
        total += count
        name = thread.split(": ", 1)[1] if ": " in thread else thread
        threads[name] = threads.get(name, 0) + count
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + count
        for function in {_function(f) for f in frames}:
            inclusive[function] = inclusive.get(function, 0) + count
        leaf_function = _function(leaf)
        bucket = C_FROM_PYTHON.get(leaf_function) or next(
            (b for b, fragments in BUCKETS if any(fr in leaf for fr in fragments)), "other"
        )
        buckets[bucket] = buckets.get(bucket, 0) + count

    def pct(value: int) -> float:
        return round(100.0 * value / total, 1) if total else 0.0

    boring = (
        "_run_module_as_main",
        "_run_code",
        "<module>",
        "main",
        "run",
        "Runner.run",
        "Handle._run",
        "BaseEventLoop.run_until_complete",
        "BaseEventLoop.run_forever",
        "BaseEventLoop._run_once",
        "Thread._bootstrap",
        "Thread._bootstrap_inner",
        "Thread.run",
    )
    out: dict[str, Any] = {
        "tool": "py-spy",
        "target": target,
        "samples": total,
        "idle_samples": idle,
        "requests": (level or {}).get("requests"),
        "threads": [{"thread": t, "pct": pct(n)} for t, n in sorted(threads.items(), key=lambda kv: -kv[1])],
        "buckets": [{"bucket": b, "own_pct": pct(n)} for b, n in sorted(buckets.items(), key=lambda kv: -kv[1])],
        "top_own": [{"function": f, "own_pct": pct(n)} for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]],
        "top_cumulative": [
            {"function": f, "cum_pct": pct(n)}
            for f, n in sorted(inclusive.items(), key=lambda kv: -kv[1])
            if f not in boring
        ][:top],
    }
    out["text"] = py_spy_text(out)
    return out


def py_spy_text(p: dict[str, Any]) -> str:
    lines = [
        f"profile of the {p.get('target', 'grpc')} server process (py-spy, all threads: {p['samples']} busy samples, "
        f"{p['idle_samples']} samples of threads waiting left out):",
        "  by thread: " + ", ".join(f"{t['thread']} {t['pct']}%" for t in p["threads"][:6]),
        "  by bucket (leaf frame): " + ", ".join(f"{b['bucket']} {b['own_pct']}%" for b in p["buckets"]),
        "  top leaf frames (own time):",
    ]
    lines += [f"    {r['own_pct']:5.1f}%  {r['function']}" for r in p["top_own"]]
    lines.append("  top functions on the stack (inclusive):")
    lines += [f"    {r['cum_pct']:5.1f}%  {r['function']}" for r in p["top_cumulative"]]
    return "\n".join(lines)
