"""``make fleet``: a fleet on network namespaces, faults under load, one table of what each cost.

Hosts (each a namespace with its own address on a bridge made here, removed at the end;
nothing leaves the machine): ``front`` (axon-grpc front), ``h1`` and ``h2`` (axon-grpc
serve), ``r1``-``r3`` (Redis primary and two replicas, a Sentinel on each, quorum 2),
``c1``-``c9`` (Redis Cluster: three primaries with two replicas each). Callers call the
front from the bridge's address. The faults, in order:

1. baseline: calls through the front, the store on Sentinel with ``wait_replicas=2`` (every
   replica: whichever is promoted holds every accepted nonce);
2. host SIGKILLed under load: calls lost, time until the front's pool drops it;
3. host drained (SIGTERM) under load: calls lost (none expected), time until out of the pool;
4. Redis primary SIGKILLed under load: refusals (503 / UNAVAILABLE) and for how long, the
   Sentinel failover time; 1 s after the failover the lost node is restarted (its supervisor's
   job) and rejoins as a replica; then every accepted request replayed to the front and each host;
5. the backends moved to the Cluster; a Cluster primary SIGKILLed under load: which callers
   are refused and for how long (the lost node restarted 1 s after its replica's promotion);
   every accepted request replayed;
6. the cost of ``wait_replicas``: one check's latency with 0, 1 and 2, interleaved.

Every row is bounded in time; the whole run takes under three minutes. Run as root:
``make fleet`` (or ``.venv/bin/python scripts/fleet_faults.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable

from redis.crc import key_slot

from axon_grpc.auth.redis_store import RedisNonceStore
from axon_grpc.fleet_calls import Call, Caller, load, replay
from axon_grpc.fleet_lab import (
    ADMIN_PORT,
    REDIS_PORT,
    Host,
    Lab,
    front_hosts,
    hotkey,
    in_pool,
    netns_missing,
    pool,
    redis_command,
    wait_pool,
)

ROWS: list[tuple[str, str, str, str]] = []
#: Replicas per primary, and the acknowledgements a nonce waits for: all of them, so that
#: whichever replica is promoted holds every accepted nonce.
REPLICAS = 2


def row(fault: str, calls: str, lost: str, detail: str) -> None:
    ROWS.append((fault, calls, lost, detail))
    print(f"  {fault}: {calls} calls, {lost}; {detail}", flush=True)


class Watch:
    """Polls something in a thread every 20 ms; records when ``changed(value)`` first turns true."""

    def __init__(self, probe: Callable[[], Any], changed: Callable[[Any], bool]) -> None:
        self.probe, self.changed = probe, changed
        self.at: float | None = None
        self.value: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.at is None:
            try:
                value = self.probe()
                if self.changed(value):
                    self.at, self.value = time.monotonic(), value
            except Exception:
                pass
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def failed(calls: list[Call]) -> list[Call]:
    return [c for c in calls if not c.accepted]


def rate(calls: list[Call]) -> float:
    span = max(c.ended for c in calls) - min(c.started for c in calls)
    return len(calls) / span if span else 0.0


async def load_with_fault(
    callers: list[Caller], front: Host, seconds: float, at: float, fault: Callable[[], Any]
) -> tuple[list[Call], float]:
    """Load the front for ``seconds``; run ``fault`` ``at`` seconds in; (calls, when the fault struck:
    the time ``fault`` returns, else when it was called)."""
    running = asyncio.ensure_future(load(callers, front.address, seconds, http_every=5))
    await asyncio.sleep(at)
    when = time.monotonic()
    struck = await asyncio.to_thread(fault)
    return await running, struck if isinstance(struck, float) else when


def start_backends(lab: Lab, hosts: list[Host], url: str, front: Host) -> dict[str, Any]:
    processes = {h.name: lab.backend(h, url, front) for h in hosts}
    for h in hosts:
        lab.wait_ready(h, processes[h.name], f"backend-{h.name}.log")
    return processes


async def run(args: argparse.Namespace) -> int:
    missing = netns_missing()
    if missing:
        print(f"make fleet needs network namespaces: {missing}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with Lab() as lab:
        front, h1, h2 = (lab.add_host(n) for n in ("front", "h1", "h2"))
        sentinel_nodes = [lab.add_host(f"r{i}") for i in (1, 2, 3)]
        cluster_nodes = [lab.add_host(f"c{i}") for i in range(1, 10)]
        r1 = sentinel_nodes[0]
        redis_primary = lab.redis(r1)
        for replica in sentinel_nodes[1:]:
            lab.redis(replica, replica_of=r1)
        lab.wait_replicated(r1, 2)
        for node in sentinel_nodes:
            lab.sentinel(node, r1, quorum=2)
        lab.wait_sentinels(sentinel_nodes[0], others=2, replicas=2)
        lab.create_cluster(cluster_nodes, replicas=2)
        sentinel_url = lab.sentinel_url(sentinel_nodes, wait_replicas=REPLICAS)
        backends = start_backends(lab, [h1, h2], sentinel_url, front)
        lab.front(front, [h1, h2])
        admin = f"{front.address}:{ADMIN_PORT}"
        both = {h1.address, h2.address}
        wait_pool(admin, both, 15)
        print(f"lab up in {time.monotonic() - started:.1f} s ({lab.subnet}.0/24); faults:", flush=True)
        callers = [Caller(i, hotkey().ss58_address) for i in range(args.callers)]
        accepted: list[Call] = []
        try:
            # 1. Baseline.
            calls = await load(callers, front.address, 2.0, http_every=5)
            accepted += [c for c in calls if c.accepted]
            hosts = Counter(c.answer.get("host") for c in calls if c.accepted)
            row(
                f"baseline (2 hosts; Sentinel, wait_replicas={REPLICAS})",
                str(len(calls)),
                f"{len(failed(calls))} failed",
                f"{rate(calls):.0f} calls/s; h1 {hosts['h1']}, h2 {hosts['h2']}",
            )

            # 2. A host SIGKILLed under load.
            watch = Watch(lambda: pool(admin), lambda p: h1.address not in p)
            calls, killed = await load_with_fault(callers, front, 5.0, 1.5, lambda: lab.kill_host(h1))
            watch.stop()
            accepted += [c for c in calls if c.accepted]
            lost = failed(calls)
            in_flight = [c for c in lost if c.started <= killed]
            late = [c for c in lost if c.started > killed]
            out = f"{watch.at - killed:.2f} s" if watch.at else "never"
            row(
                "host h1 SIGKILLed under load",
                str(len(calls)),
                f"{len(lost)} failed ({len(in_flight)} sent before the kill, {len(late)} after it, "
                f"the last {max((c.started - killed for c in late), default=0) * 1000:.0f} ms after)",
                f"out of the front's pool {out} after the kill; failures: {dict(Counter(c.status for c in lost))}",
            )
            backends.update(start_backends(lab, [h1], sentinel_url, front))
            wait_pool(admin, both, 15)

            # 3. A host drained (SIGTERM) under load.
            watch = Watch(lambda: front_hosts(admin).get(h2.address), lambda s: s is not None and not in_pool(s))
            calls, termed = await load_with_fault(
                callers, front, 5.0, 1.0, lambda: backends["h2"].send_signal(signal.SIGTERM)
            )
            watch.stop()
            accepted += [c for c in calls if c.accepted]
            code = backends["h2"].wait(15)
            out = f"{watch.at - termed:.2f} s" if watch.at else "never"
            row(
                "host h2 drained (SIGTERM) under load",
                str(len(calls)),
                f"{len(failed(calls))} failed",
                f"out of the pool {out} after SIGTERM (drain delay 2 s); exit status {code}; "
                f"front's view of h2 then: {watch.value}",
            )
            backends.update(start_backends(lab, [h2], sentinel_url, front))
            wait_pool(admin, both, 15)

            # 4. The Redis primary SIGKILLed under load.
            watch = Watch(lambda: lab.primary_of(sentinel_nodes[1]), lambda p: p not in ("", r1.address))

            def restart_r1() -> None:  # its supervisor brings it back; Sentinel makes it a replica
                while watch.at is None:
                    time.sleep(0.05)
                time.sleep(1.0)
                promoted = next(n for n in sentinel_nodes if n.address == watch.value)
                lab.redis(r1, replica_of=promoted)

            restarting = asyncio.ensure_future(asyncio.to_thread(restart_r1))
            calls, killed = await load_with_fault(
                callers, front, 10.0, 1.5, lambda: Lab.signal(redis_primary, signal.SIGKILL)
            )
            await restarting
            watch.stop()
            accepted += [c for c in calls if c.accepted]
            refused = [c for c in failed(calls) if c.status in ("UNAVAILABLE", "503")]
            other = Counter(c.status for c in failed(calls) if c not in refused)
            span = (max(c.ended for c in refused) - killed) if refused else 0.0
            failover = f"{watch.at - killed:.2f} s" if watch.at else "none seen"
            replayed = await replay(callers, accepted, [front.address, h1.address, h2.address])
            row(
                "Redis primary SIGKILLed under load (Sentinel)",
                str(len(calls)),
                f"{len(refused)} refused 503/UNAVAILABLE, {sum(other.values())} other failures {dict(other)}",
                f"refusals until {span:.2f} s after the kill; Sentinel failover {failover}, "
                f"the lost node back as a replica 1 s later; "
                f"replays of the {len(accepted)} accepted requests to front, h1, h2: {replayed} accepted",
            )

            # 5. The Cluster: a primary SIGKILLed under load.
            for name in ("h1", "h2"):
                backends[name].send_signal(signal.SIGTERM)
            for name in ("h1", "h2"):
                backends[name].wait(15)
            cluster_url = lab.cluster_url(cluster_nodes, wait_replicas=REPLICAS)
            backends.update(start_backends(lab, [h1, h2], cluster_url, front))
            wait_pool(admin, both, 15)
            found, slots = cluster_primary(cluster_nodes)
            assert found is not None
            victim = found
            victim_process = next(p for p in victim.processes if "redis-server" in str(p.args))
            cluster_callers = [Caller(100 + i, hotkey().ss58_address) for i in range(args.cluster_callers)]
            on_victim = {c.index for c in cluster_callers if key_slot(c.key.encode()) in slots}
            promoted_at: list[float] = []

            def restart_victim() -> None:
                # Only once a replica serves its slots: a primary without persistence that came back
                # before that would serve its slots again, empty (every nonce forgotten).
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    # The survivors' view: the lost primary is not among them, so an owner is its promoted replica.
                    owner, _ = cluster_primary([n for n in cluster_nodes if n is not victim], slot=min(slots))
                    if owner is not None:
                        promoted_at.append(time.monotonic())
                        break
                    time.sleep(0.05)
                time.sleep(1.0)
                lab.redis(victim, cluster=True)

            def kill_victim() -> None:
                Lab.signal(victim_process, signal.SIGKILL)
                cluster_restart.append(asyncio.run_coroutine_threadsafe(asyncio.to_thread(restart_victim), loop))

            loop = asyncio.get_running_loop()
            cluster_restart: list[Any] = []
            calls, killed = await load_with_fault(cluster_callers, front, 10.0, 1.5, kill_victim)
            await asyncio.wrap_future(cluster_restart[0])
            promotion = f"{promoted_at[0] - killed:.2f} s" if promoted_at else "none seen"
            cluster_accepted = [c for c in calls if c.accepted]
            refused = [c for c in failed(calls) if c.status in ("UNAVAILABLE", "503")]
            refused_callers = {c.caller for c in refused}
            span = (max(c.ended for c in refused if c.caller in on_victim) - killed) if refused else 0.0
            stray = [c for c in refused if c.caller not in on_victim]
            stray_note = (
                f"; the others' {len(stray)} refusals {min(c.started for c in stray) - killed:.2f}"
                f"-{max(c.ended for c in stray) - killed:.2f} s after the kill"
                if stray
                else ""
            )
            replayed = await replay(cluster_callers, cluster_accepted, [front.address, h1.address, h2.address])
            for caller in cluster_callers:
                await caller.close()
            others = Counter(c.status for c in failed(calls) if c not in refused)
            row(
                "Redis Cluster primary SIGKILLed under load",
                str(len(calls)),
                f"{len(refused)} refused 503/UNAVAILABLE, {sum(others.values())} other failures {dict(others)}",
                f"callers refused {len(refused_callers)} of {len(cluster_callers)}, "
                f"{len(refused_callers - on_victim)} of them not on the lost primary's slots "
                f"({len(on_victim)} callers were); their refusals until {span:.2f} s after the kill "
                f"(replica promoted {promotion}, the lost node back as a replica 1 s later){stray_note}; "
                f"replays of the {len(cluster_accepted)} accepted to front, h1, h2: {replayed} accepted",
            )
            accepted += cluster_accepted

            # The caller's address, as every backend saw it.
            seen = Counter(c.answer.get("caller_ip") for c in accepted)
            row(
                "dendrite.ip on the backends",
                str(len(accepted)),
                f"{sum(n for ip, n in seen.items() if ip != lab.gateway)} wrong",
                f"the callers' address is {lab.gateway}; seen: {dict(seen)}",
            )
        finally:
            for caller in callers:
                await caller.close()

        # 6. What wait_replicas=1 costs a check (from the front's host's network, to the Sentinel group).
        await wait_cost(lab, sentinel_nodes, args.checks)
    print(f"\nfleet run: {time.monotonic() - started:.0f} s\n")
    print_table()
    return 0


def cluster_primary(nodes: list[Host], slot: int | None = None) -> tuple[Host | None, set[int]]:
    """A primary of the cluster (the one serving ``slot``, if given) and the slots it serves."""
    text = redis_command(nodes[0].address, REDIS_PORT, args=["CLUSTER", "NODES"])
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 8 and "master" in parts[2] and "fail" not in parts[2]:
            address = parts[1].split(":")[0]
            slots: set[int] = set()
            for span in parts[8:]:
                if span.startswith("["):
                    continue  # a slot being migrated
                low, _, high = span.partition("-")
                slots.update(range(int(low), int(high or low) + 1))
            if slot is None or slot in slots:
                return next((n for n in nodes if n.address == address), None), slots
    if slot is not None:
        return None, set()
    raise RuntimeError("no primary in the cluster")


async def wait_cost(lab: Lab, sentinel_nodes: list[Host], checks: int) -> None:
    """One check's latency with and without ``wait_replicas=1``, interleaved in blocks of 100."""
    base = lab.sentinel_url(sentinel_nodes)
    primary = lab.primary_of(sentinel_nodes[1])
    stores = {
        f"wait_replicas={n}": RedisNonceStore(
            base + (f"?wait_replicas={n}" if n else ""), retention_ns=120 * 10**9, namespace="cost"
        )
        for n in range(REPLICAS + 1)
    }
    times: dict[str, list[float]] = {name: [] for name in stores}
    refused = Counter[str]()
    try:
        for block in range(max(1, checks // 100)):
            for name, store in stores.items():
                for i in range(100):
                    began = time.perf_counter()
                    try:
                        await store.check_and_store(f"{name}:{block}:{i}", time.time_ns(), None)
                    except Exception:
                        refused[name] += 1
                        continue
                    times[name].append(time.perf_counter() - began)
    finally:
        for store in stores.values():
            await store.close()
    p50 = {n: statistics.median(t) * 1e6 for n, t in times.items()}
    p99 = {n: sorted(t)[int(len(t) * 0.99) - 1] * 1e6 for n, t in times.items()}
    base_p50 = p50["wait_replicas=0"]
    row(
        "cost of wait_replicas (one check, sequential)",
        f"{sum(len(t) for t in times.values())}",
        f"{sum(refused.values())} refused",
        "; ".join(f"{n}: p50 {p50[n]:.0f} us (x{p50[n] / base_p50:.2f}), p99 {p99[n]:.0f} us" for n in stores)
        + f"; primary {primary}, over the lab's veth bridge",
    )


def print_table() -> None:
    headers = ("fault", "calls", "lost / refused", "detail")
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for fault, calls, lost, detail in ROWS:
        print(f"| {fault} | {calls} | {lost} | {detail} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=12, help="callers of the host and Sentinel faults (12)")
    parser.add_argument("--cluster-callers", type=int, default=30, help="callers of the Cluster fault (30)")
    parser.add_argument("--checks", type=int, default=2000, help="checks per store in the WAIT cost row (2000)")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
