"""``axon-grpc bench --in-process``: the pipeline's own cost per call, with no network.

Signed gRPC-shaped calls (the Dendrite's metadata, a fresh nonce and uuid each, signed
beforehand, outside the timed loop) are handed to ``Pipeline.handle`` one after another,
and each answer is encoded as the gRPC transport sends it (message and trailers),
on one event loop, for the demo's ``Dummy`` with blacklist and priority attached and an
async forward (with metrics on and off), an inline sync forward and a pool (thread) sync forward. Beside them,
the verified echo's work on the same inputs: one SHA3-256 of the body, one sr25519
verify of the legacy message and one dict nonce check, the least any signed server
does. Figures are microseconds of wall time per call, best of ``rounds`` (the loop is
single-threaded, so on an idle core wall time is CPU time).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, Callable

from axon_grpc.auth.keys import Keypair, parse_signature, verify_signature
from axon_grpc.auth.legacy import grpc_body_hash
from axon_grpc.bench.wire import GRPC_METHOD, GrpcSigner, grpc_body, new_uuid, pipeline_call
from axon_grpc.cli.demo import Dummy, blacklist, priority
from axon_grpc.testing import build_axon
from axon_grpc.transports.grpc_codec import reply_message, trailing_metadata


async def _forward_async(synapse: Dummy) -> Dummy:
    synapse.output = synapse.input * 2
    return synapse


def _forward_sync(synapse: Dummy) -> Dummy:
    synapse.output = synapse.input * 2
    return synapse


def _signed_calls(axon_hotkey: str, count: int) -> list[tuple[tuple[str, str], ...]]:
    body = grpc_body()
    signer = GrpcSigner(Keypair.generate(), axon_hotkey, body)
    return [signer.metadata(new_uuid(), time.time_ns() + i) for i in range(count)]


async def _time_pipeline(
    forward: Callable[..., Any], inline: bool, calls: int, rounds: int, metrics: bool = True
) -> float:
    axon = build_axon(metrics=metrics)
    axon.attach(forward_fn=forward, blacklist_fn=blacklist, priority_fn=priority, inline=inline)
    handle = axon.pipeline.handle
    body = grpc_body()
    best = float("inf")
    for _ in range(rounds):
        batch = [dict(m) for m in _signed_calls(axon.wallet.hotkey.ss58_address, calls)]
        gc.collect()
        started = time.perf_counter()
        for headers in batch:
            deadline = time.monotonic() + 12.0  # the Dendrite's grpc-timeout, which grpc.aio enforces
            outcome = await handle(pipeline_call(headers, body, 40000, deadline))
            if not outcome.ok:
                raise RuntimeError(f"the bench call was refused: {outcome.status} {outcome.message}")
            reply_message(outcome), trailing_metadata(outcome)  # the answer as the gRPC transport sends it
        best = min(best, (time.perf_counter() - started) / calls)
    axon.thread_pool.shutdown()
    return best * 1e6


def _time_verified_echo(calls: int, rounds: int) -> float:
    axon_key = Keypair.generate()
    body = grpc_body()
    best = float("inf")
    for _ in range(rounds):
        batch = [dict(m) for m in _signed_calls(axon_key.ss58_address, calls)]
        nonces: dict[str, int] = {}
        gc.collect()
        started = time.perf_counter()
        for headers in batch:
            body_hash = grpc_body_hash(GRPC_METHOD, body)
            hotkey, nonce, uuid = (
                headers["bt_header_dendrite_hotkey"],
                int(headers["bt_header_dendrite_nonce"]),
                headers["bt_header_dendrite_uuid"],
            )
            message = f"{nonce}.{hotkey}.{axon_key.ss58_address}.{uuid}.{body_hash}".encode()
            if not verify_signature(hotkey, message, parse_signature(headers["bt_header_dendrite_signature"])):
                raise RuntimeError("the bench signature did not verify")
            key = f"{hotkey}:{uuid}"
            if nonces.get(key, -1) >= nonce:
                raise RuntimeError("replay")
            nonces[key] = nonce
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def measure_in_process(calls: int = 2000, rounds: int = 5) -> dict[str, float]:
    """Microseconds per call: the verified echo's work and the pipeline with each forward kind."""
    results = {"verified echo's work": _time_verified_echo(calls, rounds)}
    for label, forward, inline, metrics in (
        ("pipeline, async forward", _forward_async, False, True),
        (METRICS_OFF, _forward_async, False, False),
        ("pipeline, inline sync forward", _forward_sync, True, True),
        ("pipeline, sync forward on the pool", _forward_sync, False, True),
    ):
        results[label] = asyncio.run(_time_pipeline(forward, inline, calls, rounds, metrics))
    return results


#: The row of the pipeline without metrics (``Axon(metrics=False)``), to show what they cost.
METRICS_OFF = "pipeline, async forward, metrics off"


def in_process_text(results: dict[str, float]) -> str:
    base = results["verified echo's work"]
    lines = ["| in process, no network | us per call | x verified echo's work |", "|---|--:|--:|"]
    for label, micros in results.items():
        lines.append(f"| {label} | {micros:.0f} | {micros / base:.2f} |")
    on, off = results.get("pipeline, async forward"), results.get(METRICS_OFF)
    if on and off:
        lines.append(
            f"\nmetrics cost in process: {on:.0f} us with metrics vs {off:.0f} us without "
            f"({(on / off - 1) * 100:+.1f}%)"
        )
    return "\n".join(lines)
