"""``axon-grpc bench --memory``: does the server's memory stay flat under many dendrite uuids?

The issue's check is "after 1,000,000 requests from 100,000 distinct dendrite uuids the
server's resident memory has grown by less than 50 MB". Sending a million signed
requests through a network client would take most of an hour on two cores, so this
drives, in one fresh process, exactly the server state those requests create:

1. ``verified`` requests (default 100,000: one per uuid, the requests that create nonce
   entries) go through the axon's whole request path, ``Pipeline.handle``, as gRPC
   calls: the credentials are read from the metadata a Dendrite sends, the sr25519
   signature and the nonce are verified and stored, the body is hashed and validated
   into the synapse, the blacklist and priority run, and the forward answers. Each
   request is signed by the client first (100 client hotkeys x 1,000 uuids each).
2. The rest (default 900,000) go straight to the axon's own nonce store
   (``axon.nonce_store.check_and_store``, the call the verify step makes) with the same
   ``{hotkey}:{uuid}`` keys built afresh per call and fresh ``time.time_ns()`` nonces.

The resident set size (``VmRSS``) is read after building the axon and the client keys
(the baseline), and after each phase; ``gc.collect()`` runs before each reading. What
it does not drive: the network transport, whose memory does not depend on how many
uuids have called.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sized
from typing import Any, Callable

from axon_grpc.bench.procstat import rss_bytes

LIMIT_MB = 50.0


async def _measure(
    requests: int, uuids: int, verified: int, hotkeys: int, progress: Callable[[str, int, int], None]
) -> dict[str, Any]:
    from axon_grpc.auth.keys import Keypair
    from axon_grpc.bench.wire import GrpcSigner, grpc_body, new_uuid, pipeline_call
    from axon_grpc.cli.demo import Dummy, blacklist, forward, priority
    from axon_grpc.testing import build_axon

    axon = build_axon({"forward_fn": forward, "blacklist_fn": blacklist, "priority_fn": priority})
    body = grpc_body()
    clients = [GrpcSigner(Keypair.generate(), axon.wallet.hotkey.ss58_address, body) for _ in range(hotkeys)]
    per_key = max(1, uuids // hotkeys)
    uuid_list = [new_uuid() for _ in range(uuids)]
    pipeline, store = axon.pipeline, axon.nonce_store
    assert "Dummy" in axon.endpoints and Dummy is axon.endpoints["Dummy"].synapse_class
    policy = axon.verify_policy
    window_ns = int((policy.base_window_s + 12.0) * 1e9)

    gc.collect()
    baseline = rss_bytes() or 0
    started = time.perf_counter()
    verified = min(verified, requests)
    refused = 0
    for i in range(verified):
        u = i % uuids
        signer = clients[min(u // per_key, hotkeys - 1)]
        headers = dict(signer.metadata(uuid_list[u], time.time_ns()))
        outcome = await pipeline.handle(pipeline_call(headers, body, 40000 + i % 20000))
        if not outcome.ok:  # counted: a refusal here would make the figure meaningless
            refused += 1
        if i % 5000 == 0:
            progress("verified path", i, verified)
    gc.collect()
    after_verified = rss_bytes() or 0
    verified_s = time.perf_counter() - started

    started = time.perf_counter()
    rest = requests - verified
    hotkey_of = [clients[min(u // per_key, hotkeys - 1)].hotkey for u in range(uuids)]
    not_accepted = 0
    for j in range(rest):
        u = (verified + j) % uuids
        now = time.time_ns()
        verdict = await store.check_and_store(f"{hotkey_of[u]}:{uuid_list[u]}", now, now - window_ns)
        if verdict.value != "accepted":
            not_accepted += 1
        if j % 50000 == 0:
            progress("nonce store", j, rest)
    gc.collect()
    final = rss_bytes() or 0
    store_s = time.perf_counter() - started
    entries = len(store) if isinstance(store, Sized) else None
    growth_mb = (final - baseline) / 2**20
    return {
        "requests": requests,
        "distinct_uuids": uuids,
        "client_hotkeys": hotkeys,
        "verified_path_requests": verified,
        "verified_path_refused": refused,
        "verified_path_s": round(verified_s, 2),
        "store_only_requests": rest,
        "store_only_not_accepted": not_accepted,
        "store_only_s": round(store_s, 2),
        "nonce_store": type(store).__name__,
        "nonce_store_entries": entries,
        "retention_s": policy.retention_ns / 1e9,
        "rss_baseline_mb": round(baseline / 2**20, 1),
        "rss_after_verified_mb": round(after_verified / 2**20, 1),
        "rss_final_mb": round(final / 2**20, 1),
        "rss_growth_mb": round(growth_mb, 1),
        "limit_mb": LIMIT_MB,
        "met": growth_mb < LIMIT_MB,
        "driven": (
            f"{verified:,} requests through Pipeline.handle (metadata -> credentials, signature and nonce, "
            "body -> synapse, blacklist, "
            f"sr25519 verify + nonce check-and-store, priority), then {rest:,} check_and_store calls on the axon's "
            f"{type(store).__name__}; {uuids:,} distinct {{hotkey}}:{{uuid}} keys from {hotkeys} hotkeys, "
            "fresh time.time_ns() nonces, in one process"
        ),
    }


def _child(requests: int, uuids: int, verified: int, hotkeys: int, results: Any) -> None:
    import sys

    def progress(phase: str, done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\rmemory: {phase:<14} {done:>9,}/{total:,}")
            sys.stderr.flush()

    try:
        out = asyncio.run(_measure(requests, uuids, verified, hotkeys, progress))
    except BaseException as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 60 + "\r")
    results.put(out)


def measure_memory(
    requests: int = 1_000_000, uuids: int = 100_000, verified: int = 100_000, hotkeys: int = 100
) -> dict[str, Any]:
    """Run the measurement in a fresh spawned process (a clean baseline); its figures."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_child, args=(requests, uuids, verified, hotkeys, results), name="bench-memory")
    proc.start()
    try:
        out: dict[str, Any] = results.get()
    finally:
        proc.join(30)
    if "error" in out:
        raise RuntimeError(f"memory measurement failed: {out['error']}")
    return out


def memory_text(m: dict[str, Any]) -> str:
    verdict = "met" if m["met"] else "NOT met"
    return (
        f"memory: RSS {m['rss_baseline_mb']} MB -> {m['rss_after_verified_mb']} MB after the verified path -> "
        f"{m['rss_final_mb']} MB at the end: grew {m['rss_growth_mb']} MB (goal < {m['limit_mb']:.0f} MB: {verdict}); "
        f"nonce store holds {m['nonce_store_entries']} entries (retention {m['retention_s']:.0f} s)\n"
        f"  driven: {m['driven']}\n"
        f"  refused on the verified path: {m['verified_path_refused']}; store calls not accepted: "
        f"{m['store_only_not_accepted']}; took {m['verified_path_s']} s + {m['store_only_s']} s"
    )
