#!/usr/bin/env python3
"""Overload benchmark: does priority keep the top class fast while the axon sheds load?

Starts an axon in its own process whose sync forward takes ``--service-ms`` (sleeping,
so the figure does not depend on this machine's CPU) on ``--workers`` threads, so its
capacity is ``workers / service`` requests per second. Two validators call it: the
"high" one, whose hotkey ``priority_fn`` ranks 10, and the "low" one, ranked 1.

1. Unloaded: the high validator alone, at a fifth of capacity: its p99 latency.
2. Overload: open-loop arrivals at ``--overload`` x capacity, ``--high-share`` of them
   from the high validator: each class's p50/p99, successes and refusals (503) by status.

Each validator is its own process (as validators are), so a saturated low-priority
client does not slow the high one's measurements.

Prints both, the ratio of the high class's overloaded p99 to its unloaded p99 (the
target is at most 2x) and the share of refusals each class absorbed.

    python scripts/bench_overload.py [--duration 10] [--overload 3] [--service-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from typing import Any

import grpc

HIGH_SEED = b"\x11" * 32
LOW_SEED = b"\x22" * 32
AXON_SEED = b"\x33" * 32


# -- the server process ----------------------------------------------------------------------
def _serve(port: int, workers: int, queue: int, service_ms: float, run_async: bool, ready: Any) -> None:
    from axon_grpc import Axon, Keypair, KeypairWallet
    from axon_grpc.cli.demo import Dummy

    high = Keypair.create_from_seed(HIGH_SEED).ss58_address

    def forward(synapse: Dummy) -> Dummy:
        time.sleep(service_ms / 1e3)
        synapse.output = synapse.input * 2
        return synapse

    async def forward_async(synapse: Dummy) -> Dummy:
        await asyncio.sleep(service_ms / 1e3)
        synapse.output = synapse.input * 2
        return synapse

    def priority(synapse: Dummy) -> float:
        return 10.0 if synapse.dendrite.hotkey == high else 1.0

    if os.environ.get("OVERLOAD_LOG"):
        import logging

        logging.basicConfig(filename=os.environ["OVERLOAD_LOG"], level=logging.DEBUG)

    async def main() -> None:
        axon = Axon(
            wallet=KeypairWallet(Keypair.create_from_seed(AXON_SEED)),
            ip="127.0.0.1",
            external_ip="127.0.0.1",
            port=port,
            max_workers=workers,
            max_queue=queue,
        )
        axon.attach(forward_fn=forward_async if run_async else forward, priority_fn=priority)
        await axon.start_async()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the load ------------------------------------------------------------------------------------
class Caller:
    """Signs requests as one validator; one uuid per in-flight request keeps nonces ordered."""

    def __init__(self, seed: bytes, axon_hotkey: str) -> None:
        from axon_grpc import Keypair
        from axon_grpc.auth.legacy import grpc_body_hash
        from axon_grpc.cli.demo import Dummy
        from axon_grpc.schema import schema_for

        self.keypair = Keypair.create_from_seed(seed)
        self.axon_hotkey = axon_hotkey
        self.body = schema_for(Dummy).to_bytes({"input": 3})
        self.body_hash = grpc_body_hash("/axon.v1.Axon/Dummy", self.body)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        nonce, uid, hotkey = time.time_ns(), str(uuid.uuid4()), self.keypair.ss58_address
        message = f"{nonce}.{hotkey}.{self.axon_hotkey}.{uid}.{self.body_hash}"
        return (
            ("bt_header_dendrite_hotkey", hotkey),
            ("bt_header_dendrite_nonce", str(nonce)),
            ("bt_header_dendrite_uuid", uid),
            ("bt_header_dendrite_version", "10005000"),
            ("bt_header_dendrite_signature", self.keypair.sign_hex(message)),
            ("computed_body_hash", self.body_hash),
            ("timeout", "12.0"),
        )


async def _one(rpc: Any, caller: Caller, results: list[tuple[str, float, str]], label: str) -> None:
    start = time.perf_counter()
    try:
        await rpc(caller.body, metadata=caller.metadata(), timeout=12.0)
        status = "OK"
    except grpc.aio.AioRpcError as e:
        status = e.code().name
    results.append((label, time.perf_counter() - start, status))


async def _open_loop(port: int, label: str, rate: float, duration: float) -> list[tuple[str, float, str]]:
    """One validator's arrivals at ``rate`` per second for ``duration`` s, whatever the answers do."""
    from axon_grpc import Keypair

    axon_hotkey = Keypair.create_from_seed(AXON_SEED).ss58_address
    caller = Caller(HIGH_SEED if label == "high" else LOW_SEED, axon_hotkey)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(4)]
    rpcs = [c.unary_unary("/axon.v1.Axon/Dummy") for c in channels]
    results: list[tuple[str, float, str]] = []
    tasks: list[asyncio.Task[None]] = []
    interval = 1.0 / rate
    begin = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - begin < duration:
        due = begin + sent * interval
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(_one(rpcs[sent % 4], caller, results, label)))
        sent += 1
    await asyncio.gather(*tasks)
    for channel in channels:
        await channel.close()
    return results


def _validator(port: int, label: str, rate: float, duration: float, out: Any) -> None:
    """A validator process: its own loop and CPU, so one class's load never slows the other's client."""
    out.send(asyncio.run(_open_loop(port, label, rate, duration)))
    out.close()


def _run_validators(context: Any, port: int, rates: dict[str, float], duration: float) -> list[tuple[str, float, str]]:
    pipes, processes = [], []
    for label, rate in rates.items():
        if rate <= 0:
            continue
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_validator, args=(port, label, rate, duration, send), daemon=True)
        process.start()
        pipes.append(receive)
        processes.append(process)
    results: list[tuple[str, float, str]] = []
    for receive in pipes:
        results.extend(receive.recv())
    for process in processes:
        process.join(10)
    return results


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process, all threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(results: list[tuple[str, float, str]], label: str) -> dict[str, Any]:
    mine = [(latency, status) for name, latency, status in results if name == label]
    ok = sorted(latency for latency, status in mine if status == "OK")
    statuses = Counter(status for _, status in mine)

    def pct(p: float) -> float | None:
        return round(ok[min(len(ok) - 1, int(p * len(ok)))] * 1e3, 1) if ok else None

    return {
        "sent": len(mine),
        "ok": len(ok),
        "statuses": dict(statuses),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(ok) * 1e3, 1) if ok else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--queue", type=int, default=32, help="admission queue bound (max_queue)")
    parser.add_argument("--service-ms", type=float, default=100.0, help="forward time (default 100 ms, a quick model)")
    parser.add_argument("--async-forward", action="store_true", help="an async forward (no worker threads)")
    parser.add_argument("--overload", type=float, default=3.0, help="offered load / capacity")
    parser.add_argument("--high-share", type=float, default=0.2, help="share of arrivals from the high validator")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    from axon_grpc.edge.serve import free_port  # a manual tool: a port free a moment ago

    port = args.port or free_port("127.0.0.1")
    capacity = args.workers / (args.service_ms / 1e3)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    server = context.Process(
        target=_serve, args=(port, args.workers, args.queue, args.service_ms, args.async_forward, ready), daemon=True
    )
    server.start()
    try:
        if not ready.wait(60):
            print("the axon did not start", file=sys.stderr)
            return 1
        print(
            f"axon: {args.workers} workers x {args.service_ms:g} ms = capacity {capacity:.0f} req/s, "
            f"queue {args.queue}; pid {server.pid}",
            file=sys.stderr,
        )
        unloaded = _run_validators(context, port, {"high": capacity / 5}, args.duration)
        offered = capacity * args.overload
        cpu_before, wall_before = _cpu_seconds(server.pid), time.monotonic()
        overloaded = _run_validators(
            context, port, {"high": offered * args.high_share, "low": offered * (1 - args.high_share)}, args.duration
        )
        server_load = (_cpu_seconds(server.pid) - cpu_before) / (time.monotonic() - wall_before)
    finally:
        server.terminate()
        server.join(10)

    base = _summary(unloaded, "high")
    high, low = _summary(overloaded, "high"), _summary(overloaded, "low")
    refused = {name: s["statuses"].get("UNAVAILABLE", 0) for name, s in (("high", high), ("low", low))}
    total_refused = sum(refused.values()) or 1
    ratio = (high["p99_ms"] / base["p99_ms"]) if high["p99_ms"] and base["p99_ms"] else None
    figures = {
        "capacity_rps": round(capacity),
        "offered_rps": round(capacity * args.overload),
        "unloaded_high": base,
        "overloaded_high": high,
        "overloaded_low": low,
        "high_p99_ratio": round(ratio, 2) if ratio else None,
        "server_cores_busy_under_overload": round(server_load, 2),
        "refusal_share": {name: round(count / total_refused, 3) for name, count in refused.items()},
        "settings": vars(args),
    }
    print(f"{'class':<16}{'sent':>7}{'ok':>7}{'refused':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for name, s in (("high, unloaded", base), ("high, overload", high), ("low, overload", low)):
        print(
            f"{name:<16}{s['sent']:>7}{s['ok']:>7}{s['statuses'].get('UNAVAILABLE', 0):>9}"
            f"{s['p50_ms'] or '-':>9}{s['p99_ms'] or '-':>9}"
        )
    print(f"high p99 under {args.overload:g}x overload / unloaded: {figures['high_p99_ratio']}x (target <= 2x)")
    print(f"server CPU under overload: {server_load:.2f} cores")
    print(f"refusals absorbed: high {figures['refusal_share']['high']:.1%}, low {figures['refusal_share']['low']:.1%}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(figures, out, indent=2)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
