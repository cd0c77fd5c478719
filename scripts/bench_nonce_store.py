#!/usr/bin/env python3
"""Time the nonce store's check-and-store: Redis (one Lua round trip) beside in-memory.

    python scripts/bench_nonce_store.py [--url redis://127.0.0.1:6379/0] [-n 10000] [--concurrency 32]

Without --url, a private redis-server (no persistence) is started on a free loopback
port and stopped at the end. Prints one line per measurement: sequential calls give
the round-trip cost per request; concurrent ones give the throughput of one process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from axon_grpc.auth.nonces import InMemoryNonceStore, NonceStore, NonceVerdict
from axon_grpc.auth.redis_store import RedisNonceStore
from axon_grpc.testing import RedisServer

RETENTION_NS = 94 * 10**9


@contextmanager
def local_redis() -> Iterator[str]:
    """A throw-away redis-server on a free loopback port; yields its URL."""
    try:
        server = RedisServer()
    except FileNotFoundError as e:
        raise SystemExit(f"{e}, or pass --url") from None
    with server:
        yield server.url


async def sequential(store: NonceStore, n: int) -> list[float]:
    """Latency of ``n`` awaited calls, one at a time (distinct keys, fresh nonces)."""
    latencies = []
    for i in range(n):
        nonce = time.time_ns()
        start = time.perf_counter()
        verdict = await store.check_and_store(f"hk:{i % 1000}:{i}", nonce, nonce - 10**9)
        latencies.append(time.perf_counter() - start)
        assert verdict is NonceVerdict.ACCEPTED
    return latencies


async def concurrent(store: NonceStore, n: int, concurrency: int) -> float:
    """Seconds for ``n`` calls issued by ``concurrency`` tasks."""
    counter = iter(range(n))

    async def worker(w: int) -> None:
        for i in counter:
            nonce = time.time_ns()
            await store.check_and_store(f"c{w}:{i}", nonce, nonce - 10**9)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return time.perf_counter() - start


def report(name: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(
        f"{name:<9} sequential n={len(latencies)}: mean {statistics.fmean(latencies) * 1e6:7.1f} us  "
        f"p50 {statistics.median(latencies) * 1e6:7.1f} us  p99 {p99 * 1e6:7.1f} us"
    )


async def run(url: str, n: int, concurrency: int) -> None:
    redis_store = RedisNonceStore(url, retention_ns=RETENTION_NS, namespace=f"bench-{time.time_ns()}")
    memory_store = InMemoryNonceStore(RETENTION_NS)
    try:
        await sequential(redis_store, 200)  # connect and load the script first
        report("redis", await sequential(redis_store, n))
        report("in-memory", await sequential(memory_store, n))
        seconds = await concurrent(redis_store, n, concurrency)
        print(
            f"redis     concurrent n={n} x{concurrency}: {n / seconds:8.0f} checks/s  ({seconds * 1e6 / n:.1f} us each)"
        )
    finally:
        await redis_store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a Redis to measure against (default: start a private redis-server)")
    parser.add_argument("-n", type=int, default=10_000, help="calls per measurement (default 10000)")
    parser.add_argument("--concurrency", type=int, default=32, help="tasks in the concurrent run (default 32)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(run(args.url, args.n, args.concurrency))
    else:
        with local_redis() as url:
            asyncio.run(run(url, args.n, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
