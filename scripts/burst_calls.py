#!/usr/bin/env python3
"""Many signed calls at once on one gRPC channel to an in-process axon: how each ended.

    python scripts/burst_calls.py [--calls 200] [--rounds 3] [--overload-protection]

Prints, per round, the count of each (status, message) for: the project's Dendrite, and a
hand-signed client (one uuid, as docs/SPEC.md R15 asks) signing while its channel connects
and once it is connected. ``--overload-protection`` serves with grpc-core's default stream
accounting (``grpc.http.overload_protection`` on), the setting the axon turns off (R23).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from axon_grpc.testing import serve_axon
from axon_grpc.transports import grpc_aio
from tests.support import Dummy, RawCaller, dummy_forward


def _tally(pairs: Any) -> str:
    counts = collections.Counter(pairs)
    return ", ".join(f"{n} x {status} {message[:70]!r}" for (status, message), n in counts.most_common())


async def _raw(address: str, hotkey: str, calls: int, rounds: int, connected_first: bool) -> None:
    caller = RawCaller(address, hotkey)
    try:
        if connected_first:
            await caller.channel.channel_ready()
        for n in range(rounds):
            results = await asyncio.gather(*(caller.call("Dummy", b"\x08\x07") for _ in range(calls)))
            label = "connected first" if connected_first else "signed while connecting"
            print(f"  raw client, {label}, round {n + 1}: {_tally((r[0].name, r[2]) for r in results)}")
    finally:
        await caller.close()


async def main(calls: int, rounds: int, protection: bool) -> None:
    if protection:
        options = grpc_aio.GrpcSettings.options

        def with_protection(self: grpc_aio.GrpcSettings) -> list[tuple[str, Any]]:
            return [(k, 1 if k == "grpc.http.overload_protection" else v) for k, v in options(self)]

        grpc_aio.GrpcSettings.options = with_protection  # type: ignore[method-assign]
    print(f"{calls} calls at once on one channel, grpc {grpc.__version__}, overload protection {protection}")
    async with serve_axon(dummy_forward) as h:
        for n in range(rounds):
            results = await asyncio.gather(*(h.call(Dummy(input=i)) for i in range(calls)))
            tally = _tally((r.dendrite.status_code, r.dendrite.status_message or "") for r in results)
            print(f"  Dendrite, round {n + 1}: {tally}")
    for connected_first in (False, True):
        async with serve_axon(dummy_forward) as h:
            await _raw(h.info.ip_str(), h.info.hotkey, calls, rounds, connected_first)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--overload-protection", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds, args.overload_protection))
