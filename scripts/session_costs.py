#!/usr/bin/env python3
"""What a call costs the axon's request path, by how it is authenticated: signed (the legacy
scheme) or by a session (``axon-session/1``), each accepted and forged; and what an open costs.

Each kind is driven through the axon's own pipeline (``Pipeline.handle``, no sockets: the part
the scheme changes) on one event loop, with the requests built beforehand, so the figures are
the axon's work alone. The kinds take turns in rounds (one interleaved run), and the median
round is printed, with the ratios.

    python scripts/session_costs.py [--calls 400] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any, Callable

from axon_grpc import Keypair
from axon_grpc.auth.sessions import SessionPolicy
from axon_grpc.cli.demo import Dummy
from axon_grpc.client.sessions import accept_session, open_request
from axon_grpc.server.call import Call
from axon_grpc.testing import build_axon
from axon_grpc.transports.grpc_codec import GRPC_CODEC

METHOD = "/axon.v1.Axon/Dummy"
BODY = b"\x08\x07"


def dummy(synapse: Dummy) -> Dummy:
    synapse.output = 2 * synapse.input
    return synapse


def signed_metadata(keypair: Keypair, axon: str, uuid: str, nonce: int, forged: bool) -> dict[str, str]:
    from axon_grpc.auth.legacy import PROTOCOL_VERSION, grpc_body_hash

    body_hash = grpc_body_hash(METHOD, BODY)
    signature = keypair.sign_hex(f"{nonce}.{keypair.ss58_address}.{axon}.{uuid}.{body_hash}")
    if forged:
        signature = "0x" + os.urandom(64).hex()
    return {
        "name": "Dummy",
        "timeout": "12.0",
        "computed_body_hash": body_hash,
        "bt_header_dendrite_hotkey": keypair.ss58_address,
        "bt_header_dendrite_nonce": str(nonce),
        "bt_header_dendrite_uuid": uuid,
        "bt_header_dendrite_version": str(PROTOCOL_VERSION),
        "bt_header_dendrite_signature": signature,
    }


async def run(calls: int, rounds: int) -> None:
    policy = SessionPolicy(open_rate=1e9, open_burst=10**9, open_rate_per_address=1e9, open_burst_per_address=10**9)
    axon = build_axon({"forward_fn": dummy, "inline": True}, sessions=policy, metrics=False)
    axon.prepare()
    pipeline, sessions, hotkey = axon.pipeline, axon.sessions, axon.terminal.address
    assert sessions is not None
    keypair = Keypair.generate()

    async def open_one() -> Any:
        request, private = open_request(keypair, hotkey)
        data = request.encode()

        async def read() -> bytes:
            return data

        return accept_session(request, private, await sessions.open(read, "127.0.0.1"))

    session = await open_one()

    def call(headers: dict[str, str]) -> Call:
        return Call(name="Dummy", headers=headers, codec=GRPC_CODEC, body=BODY, peer_ip="127.0.0.1", path=METHOD)

    def batch(kind: str) -> list[Any]:
        """The requests of one round of ``kind``, built before it is timed."""
        if kind == "open":
            return [open_request(keypair, hotkey) for _ in range(calls)]
        if kind in ("signed", "forged signature"):
            uuid = os.urandom(8).hex()
            nonce = time.time_ns()
            return [call(signed_metadata(keypair, hotkey, uuid, nonce + i, kind != "signed")) for i in range(calls)]
        out = []
        for _ in range(calls):
            metadata = dict(session.metadata(METHOD, BODY, "12.0"), name="Dummy")
            if kind == "forged MAC":
                metadata["axon-session-mac"] = os.urandom(32).hex()
            out.append(call(metadata))
        return out

    async def timed(kind: str, items: list[Any]) -> float:
        expected = 401 if kind.startswith("forged") else 200
        began = time.perf_counter()
        if kind == "open":
            for request, _ in items:
                data = request.encode()

                async def read(data: bytes = data) -> bytes:
                    return data

                await sessions.open(read, "127.0.0.1")
        else:
            for item in items:
                outcome = await pipeline.handle(item)
                assert outcome.status == expected, (kind, outcome.status, outcome.message)
        return (time.perf_counter() - began) / len(items) * 1e6

    kinds = ["signed", "session", "forged signature", "forged MAC", "open"]
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            results[kind].append(await timed(kind, batch(kind)))
        sessions.table.sessions.clear()  # the opens' sessions; the measured one is re-added below
        sessions.table.by_hotkey.clear()
        sessions.table.by_address.clear()
        session = await open_one()
    medians = {kind: statistics.median(values) for kind, values in results.items()}
    print(f"axon request path, {calls} calls a kind per round, {rounds} rounds interleaved, median round:")
    for kind in kinds:
        print(f"  {kind:17s} {medians[kind]:8.1f} us per call")
    ratio: Callable[[str, str], float] = lambda a, b: medians[a] / medians[b]  # noqa: E731
    print(f"  session / signed:                   {ratio('session', 'signed'):.2f}")
    print(f"  forged MAC / forged signature:      {ratio('forged MAC', 'forged signature'):.2f}")
    print(f"  open / signed call:                 {ratio('open', 'signed'):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.rounds))


if __name__ == "__main__":
    main()
