"""CPU and memory figures read from ``/proc`` (Linux), with a portable fallback."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid``, all its threads included (``/proc/<pid>/stat``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    # After "pid (comm) ": state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _TICKS


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds of each thread of process ``pid``, by ``{name}:{tid}``
    (``/proc/<pid>/task/<tid>/stat``); empty when it cannot be read."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue  # the thread ended meanwhile
        name = data[data.index(b"(") + 1 : data.rindex(b")")].decode(errors="replace")
        fields = data[data.rindex(b")") + 2 :].split()
        out[f"{name}:{tid}"] = (int(fields[11]) + int(fields[12])) / _TICKS
    return out


def machine_cpu_seconds() -> tuple[float, float, float] | None:
    """(busy, stolen, total) CPU seconds of the whole machine since boot (``/proc/stat``).

    ``stolen`` is the hypervisor's steal time (a virtual machine's host running others);
    ``busy`` excludes it, idle and iowait.
    """
    try:
        with open("/proc/stat", "rb") as f:
            first = f.readline().split()
    except OSError:
        return None
    values = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(values)
    idle = values[3] + values[4]
    steal = values[7]
    return (total - idle - steal) / _TICKS, steal / _TICKS, total / _TICKS


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size of a process (``VmRSS``)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the report states about the machine and the software measured."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "grpcio": v("grpcio"),
        "protobuf": v("protobuf"),
        "pydantic": v("pydantic"),
        "uvicorn": v("uvicorn"),
        "axon_grpc": v("axon-grpc"),
    }
