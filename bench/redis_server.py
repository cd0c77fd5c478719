"""A private ``redis-server`` for the ``grpc-2w-redis`` target, and the Redis round-trip probe.

:class:`LocalRedis` starts ``redis-server`` on a free loopback port without persistence
(``--save "" --appendonly no``, a temporary ``--dir``), waits until it answers PING,
and stops it after the target. Its pid is read like the server's, so the report gives
Redis's own CPU per request.

:func:`round_trip` is the measurement of ``scripts/bench_nonce_store.py``, run by the
bench against the same Redis once the target's levels are done: sequential
``check_and_store`` calls through the axon's :class:`~axon_grpc.auth.redis_store.RedisNonceStore`
(one ``EVALSHA`` round trip each) beside the same calls on the in-memory store, with the
wall time, this process's CPU and the redis-server's CPU per call. The difference is what
the shared store adds to each request.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from axon_grpc.testing import RedisServer

from .procstat import process_cpu_seconds

#: Calls per store in the round-trip probe (about a second in all on a 2-core machine).
PROBE_CALLS = 4000

MISSING = "redis-server not found (apt-get install redis-server; `make bench` installs it when run as root)"


def redis_binary() -> str | None:
    return shutil.which("redis-server")


class LocalRedis(RedisServer):
    """The harness's throw-away ``redis-server``, logging to the bench's log folder."""

    def __init__(self, log_path: Path) -> None:
        if redis_binary() is None:
            raise FileNotFoundError(MISSING)
        super().__init__(log_path=log_path)

    def version(self) -> str | None:
        try:
            out = subprocess.run(
                [self.binary, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        for part in out.split():
            if part.startswith("v="):
                return part[2:]
        return None


def round_trip(url: str, redis_pid: int | None, calls: int = PROBE_CALLS) -> dict[str, Any]:
    """Sequential check-and-store calls on Redis and in memory; figures per call (microseconds)."""
    return asyncio.run(_round_trip(url, redis_pid, calls))


async def _round_trip(url: str, redis_pid: int | None, calls: int) -> dict[str, Any]:
    from axon_grpc.auth.nonces import InMemoryNonceStore, NonceVerdict
    from axon_grpc.auth.redis_store import RedisNonceStore

    retention_ns = 94 * 10**9
    redis_store = RedisNonceStore(url, retention_ns=retention_ns, namespace=f"bench-probe-{time.time_ns()}")
    memory_store = InMemoryNonceStore(retention_ns)

    async def sequential(store: Any, n: int, prefix: str) -> dict[str, float]:
        latencies = []
        redis_before = process_cpu_seconds(redis_pid) if redis_pid else None
        cpu_before = time.process_time()
        for i in range(n):
            nonce = time.time_ns()
            start = time.perf_counter()
            verdict = await store.check_and_store(f"{prefix}:{i}", nonce, nonce - 10**9)
            latencies.append(time.perf_counter() - start)
            if verdict is not NonceVerdict.ACCEPTED:
                raise RuntimeError(f"the probe's check-and-store answered {verdict}")
        cpu = time.process_time() - cpu_before
        redis_after = process_cpu_seconds(redis_pid) if redis_pid else None
        latencies.sort()
        figures = {
            "mean_us": sum(latencies) / n * 1e6,
            "p50_us": latencies[n // 2] * 1e6,
            "p99_us": latencies[max(0, int(n * 0.99) - 1)] * 1e6,
            "client_cpu_us": cpu / n * 1e6,
        }
        if redis_before is not None and redis_after is not None:
            figures["redis_cpu_us"] = (redis_after - redis_before) / n * 1e6
        return figures

    try:
        await sequential(redis_store, min(200, calls), "warm")  # connect, load the script
        on_redis = await sequential(redis_store, calls, "r")
        in_memory = await sequential(memory_store, calls, "m")
    finally:
        await redis_store.close()
    return {
        "method": "sequential RedisNonceStore.check_and_store calls from the bench process against the target's "
        "redis-server, beside the in-memory store (scripts/bench_nonce_store.py's measurement)",
        "calls": calls,
        "redis": on_redis,
        "in_memory": in_memory,
        "added_latency_us": on_redis["mean_us"] - in_memory["mean_us"],
        "added_client_cpu_us": on_redis["client_cpu_us"] - in_memory["client_cpu_us"],
        "redis_cpu_us": on_redis.get("redis_cpu_us"),
    }
