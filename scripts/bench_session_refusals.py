#!/usr/bin/env python3
"""CPU an axon spends on each kind of hostile ``axon-session/1`` request, beside a forged signature.

    python scripts/bench_session_refusals.py [-n 2000] [--rounds 5]

The axon's own code only (``Sessions.open``, ``Sessions.find`` + ``authenticate``, the sr25519
verification a signed call costs), in one process, no network: what each refusal costs the
axon once the request is read. The kinds are timed in interleaved rounds (each round runs
every kind once, ``-n`` requests each); each line is the median over rounds, in microseconds
of process CPU per request, and its ratio to a forged signature's verification.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any, Callable, Coroutine

from axon_grpc import Keypair
from axon_grpc.auth.keys import verify_signature
from axon_grpc.auth.nonces import InMemoryNonceStore
from axon_grpc.auth.sessions import SessionPolicy, SessionRefused, Sessions
from axon_grpc.client.sessions import accept_session, open_request
from axon_grpc.errors import AxonError

AXON = Keypair.generate()
CALLER = Keypair.generate()
UNLIMITED = SessionPolicy(
    open_rate=1e9, open_burst=10**9, open_rate_per_address=1e9, open_burst_per_address=10**9, per_address=10**9
)


def sessions(policy: SessionPolicy) -> Sessions:
    store = InMemoryNonceStore(120 * 10**9, max_keys=10**7)
    return Sessions(lambda: AXON, lambda: store, policy)


async def refused_opens(target: Sessions, datas: list[bytes], address: str = "10.0.0.1") -> None:
    for data in datas:

        async def read(data: bytes = data) -> bytes:
            return data

        try:
            await target.open(read, address)
        except AxonError:
            pass


def kinds(n: int) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
    """Each kind: a coroutine factory doing ``n`` requests (their inputs built beforehand, untimed)."""
    drained = sessions(SessionPolicy(open_burst=1, open_rate=1e-9))
    open_ = sessions(UNLIMITED)
    request, private = open_request(CALLER, AXON.ss58_address)

    async def accept_one() -> bytes:
        async def read() -> bytes:
            return request.encode()

        return await open_.open(read, "10.0.0.2")

    session = accept_session(request, private, asyncio.run(accept_one()))
    message = b"x" * 64
    signature = CALLER.sign(message)
    # A forged signature an attacker would send: well-formed (a real signature of another message),
    # so the verification runs to its end instead of stopping at a malformed encoding.
    forged_signature = CALLER.sign(b"another message")

    def bad_signature() -> bytes:
        r, _ = open_request(CALLER, AXON.ss58_address)
        r.signature = "0x" + forged_signature.hex()
        return r.encode()

    async def forged_macs() -> None:
        body = b"\x08\x07"
        for counter in range(1, n + 1):
            try:
                found = open_.find(session.id, counter, "0" * 64)
                open_.authenticate(found, counter, "0" * 64, "/axon.v1.Axon/Dummy", body, "5.0")
            except SessionRefused:
                pass

    async def forged_signatures() -> None:
        for _ in range(n):
            verify_signature(CALLER.ss58_address, message, forged_signature)

    async def good_signatures() -> None:
        for _ in range(n):
            verify_signature(CALLER.ss58_address, message, signature)

    return {
        "open refused by the rate": lambda: refused_opens(drained, [request.encode()] * n),
        "open of garbage bytes": lambda: refused_opens(open_, [b"\xff"] * n),
        "open with a bad signature": lambda: refused_opens(open_, [bad_signature() for _ in range(n)]),
        "open accepted": lambda: refused_opens(
            sessions(UNLIMITED), [open_request(Keypair.generate(), AXON.ss58_address)[0].encode() for _ in range(n)]
        ),
        "session call, forged MAC": forged_macs,
        "signed call, forged signature (verify)": forged_signatures,
        "signed call, valid signature (verify)": good_signatures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    per: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, make in kinds(args.n).items():
            run = make()
            began = time.process_time()
            asyncio.run(run)
            per.setdefault(name, []).append((time.process_time() - began) / args.n * 1e6)
    base = statistics.median(per["signed call, forged signature (verify)"])
    print(f"# us of CPU per request, median of {args.rounds} interleaved rounds of {args.n}; pid {os.getpid()}")
    for name, samples in per.items():
        median = statistics.median(samples)
        print(f"{name:42s} {median:9.1f} us  {median / base:6.2f}x a forged signature's verification")


if __name__ == "__main__":
    main()
