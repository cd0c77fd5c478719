"""One validator process for the fan-out benchmark: this project's Dendrite or the SDK 10.5.0 one.

Run as a script by the interpreter that has the client (``.venv/legacy/bin/python`` for
``--client sdk``, which must not import ``axon_grpc``)::

    python bench/fanout_client.py --client ours --transport grpc --hotkey 5F... \\
        --live 40001,40002 --dead 40100 --steps 6 --timeout 2

Prints one JSON line: CPU per call over warm steps to the live axons, the wall time of
steps to live and dead axons together, the client's sockets after the first and the last
step (equal: connections reused), and its resident memory per axon.
"""

# No "from __future__ import annotations": the SDK reads the annotations of its synapses.

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any, List, Optional

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # this folder's modules must not shadow the SDK's


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tcp_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def build(client: str, transport: str) -> Any:
    """(dendrite, Synapse class, AxonInfo class, close coroutine function)."""
    if client == "sdk":
        import bittensor
        from bittensor.utils import networking
        from bittensor_wallet import Keypair

        networking.get_external_ip = lambda: "127.0.0.1"  # it would ask services on the internet

        class Dummy(bittensor.Synapse):
            input: int
            output: Optional[int] = None
            required_hash_fields: Any = ("input",)

        dendrite = bittensor.Dendrite(wallet=Keypair.create_from_mnemonic(Keypair.generate_mnemonic()))
        return dendrite, Dummy, bittensor.AxonInfo, dendrite.aclose_session
    from axon_grpc import AxonInfo, Dendrite, KeypairWallet, Synapse

    class Dummy(Synapse):  # type: ignore[no-redef]
        input: int
        output: Optional[int] = None
        required_hash_fields = ("input",)

    dendrite = Dendrite(KeypairWallet.generate(), transport=transport)
    return dendrite, Dummy, AxonInfo, dendrite.aclose


async def run(args: argparse.Namespace) -> dict:
    dendrite, dummy, axon_info, close = build(args.client, args.transport)

    def axons(ports: List[int]) -> list:
        return [
            axon_info(version=10005000, ip="127.0.0.1", port=p, ip_type=4, hotkey=args.hotkey, coldkey=args.hotkey)
            for p in ports
        ]

    live = axons([int(p) for p in args.live.split(",")])
    dead = axons([int(p) for p in args.dead.split(",")]) if args.dead else []
    rss_before = rss_kib()
    cpu: List[float] = []
    ok = 0
    sockets_first = 0
    for step in range(args.steps):
        t0 = time.process_time()
        results = await dendrite.forward(live, dummy(input=step), timeout=args.timeout, deserialize=False)
        cpu.append(time.process_time() - t0)
        ok += sum(1 for r in results if r.dendrite.status_code == 200)
        if step == 0:
            sockets_first = tcp_sockets()
    sockets_last = tcp_sockets()
    walls: List[float] = []
    statuses: dict = {}
    for step in range(args.dead_steps if dead else 0):
        t0 = time.perf_counter()
        results = await dendrite.forward(live + dead, dummy(input=step), timeout=args.timeout, deserialize=False)
        walls.append(time.perf_counter() - t0)
        for r in results:
            statuses[str(r.dendrite.status_code)] = statuses.get(str(r.dendrite.status_code), 0) + 1
    rss_after = rss_kib()
    try:
        await close()
    except AttributeError:  # SDK 10.5's aclose_session before any session exists
        pass
    warm = cpu[1:] or cpu
    return {
        "client": args.client,
        "transport": args.transport,
        "axons_live": len(live),
        "axons_dead": len(dead),
        "steps": args.steps,
        "ok": ok,
        "calls": args.steps * len(live),
        "cpu_ms_per_call_first_step": cpu[0] * 1e3 / len(live),
        "cpu_ms_per_call": sum(warm) * 1e3 / (len(warm) * len(live)),
        "sockets_after_first_step": sockets_first,
        "sockets_after_last_step": sockets_last,
        "timeout_s": args.timeout,
        "fanout_wall_s": walls,
        "fanout_statuses": statuses,
        "rss_kib_per_axon": (rss_after - rss_before) / (len(live) + len(dead)),
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="fanout_client.py")
    parser.add_argument("--client", choices=("ours", "sdk"), required=True)
    parser.add_argument("--transport", default="http", choices=("grpc", "http", "auto"))
    parser.add_argument("--hotkey", required=True)
    parser.add_argument("--live", required=True, help="comma-separated ports of answering axons")
    parser.add_argument("--dead", default="", help="comma-separated ports that never answer")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--dead-steps", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # bittensor's config parser reads sys.argv
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
