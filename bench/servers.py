"""The benchmark's server processes: ``python -m bench.servers KIND --port P``.

Kinds:

- ``grpc``: the project's :class:`~axon_grpc.server.axon.Axon` serving the demo ``Dummy``
  synapse (sync forward, blacklist and priority attached, default verify) over gRPC.
- ``grpc-async``: the same with the forward declared ``async``: it runs on the event loop
  instead of being handed to a worker thread.
- ``grpc-async-nometrics``: ``grpc-async`` built with ``Axon(metrics=False)``: the
  metrics' cost is the difference between the two.
- ``http``: the same axon with its HTTP bridge on ``--http-port`` (legacy requests).
- ``library-edge``: ``grpc-async`` started with ``edge=True``: its own Envoy process on
  ``--port`` in front of the servers (Unix sockets); the ready line adds ``envoy_pid``.
  The others serve directly (``edge=False``).
- ``grpc-2w-redis``: the ``grpc`` axon run as ``--workers`` (default 2) processes sharing
  ``--port`` with SO_REUSEPORT (:class:`~axon_grpc.server.workers.WorkerGroup`), every worker
  checking nonces in the Redis of ``--nonce-store redis://...``; all share one hotkey
  (seeded here). This process supervises them; its ready line adds ``worker_pids``.
- ``grpc-1w-redis``: the same with one worker (``--workers`` defaults to the kind's count).
- ``echo``: a bare ``grpc.aio`` server answering every unary call with its request bytes
  (the ceiling of one Python gRPC process).
- ``echo-verified``: the same echo plus what any signed server must do per request:
  one SHA3-256 of the body, one sr25519 verify of the legacy message, one dict nonce check
  (``{hotkey}:{uuid}`` strictly increasing, first nonce fresh).

Each serves on the asyncio loop of the process's main thread, prints one line
``BENCH-READY {json}`` (pid, ports, the axon hotkey) on stdout once it listens, and
stops on SIGTERM or SIGINT. With ``--cprofile FILE`` the loop thread runs under cProfile
and the stats are written to FILE at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
import time
from typing import Any

import grpc

READY_PREFIX = "BENCH-READY "
KINDS = (
    "grpc",
    "grpc-async",
    "grpc-async-nometrics",
    "grpc-inline",
    "envoy",
    "envoy-echo-verified",
    "http",
    "library-edge",
    "echo",
    "echo-verified",
    "grpc-1w-redis",
    "grpc-2w-redis",
)


def announce(**fields: Any) -> None:
    print(READY_PREFIX + json.dumps({"pid": os.getpid(), **fields}), flush=True)


class _Echo(grpc.GenericRpcHandler):
    """Every unary method answers its request bytes (optionally after the signed checks)."""

    def __init__(self, verified: bool, hotkey: str) -> None:
        self.hotkey = hotkey
        self.nonces: dict[str, int] = {}
        self.verified = verified
        self.echo_handler = grpc.unary_unary_rpc_method_handler(self._echo)
        #: Verified handlers by method path: the body hash covers the method, as the axon's does.
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        if not self.verified:
            return self.echo_handler
        method = handler_call_details.method
        handler = self.handlers.get(method)
        if handler is None:
            handler = self.handlers[method] = self._verified_handler(method)
        return handler

    def _verified_handler(self, method: str) -> grpc.RpcMethodHandler:
        async def verified(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._verified(method, request, context)

        return grpc.unary_unary_rpc_method_handler(verified)

    @staticmethod
    async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def _verified(self, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        md = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        refused = verified_echo_refusal(method, request, md, self.hotkey, self.nonces)
        if refused is not None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
        return request


def verified_echo_refusal(
    method: str, request: bytes, md: dict[str, str], axon_hotkey: str, nonces: dict[str, int]
) -> str | None:
    """The least a signed server checks, as the axon checks it: the method-bound body hash,
    the sr25519 signature and a strictly newer nonce (stored); the reason of a refusal, else None."""
    import sr25519

    from axon_grpc.auth.keys import ss58_decode

    digest = hashlib.sha3_256(method.encode())
    digest.update(b"\n")
    digest.update(request)
    body_hash = digest.hexdigest()
    hotkey = md.get("bt_header_dendrite_hotkey", "")
    nonce_text = md.get("bt_header_dendrite_nonce", "")
    uuid = md.get("bt_header_dendrite_uuid", "")
    try:
        if body_hash != md.get("computed_body_hash"):
            return "body hash"
        nonce = int(nonce_text)
        message = f"{nonce_text}.{hotkey}.{axon_hotkey}.{uuid}.{body_hash}".encode()
        signature = bytes.fromhex(md.get("bt_header_dendrite_signature", "")[2:])
        if not sr25519.verify(signature, message, _public_key(hotkey, ss58_decode)):
            return "signature"
    except ValueError as e:
        return str(e)
    key = f"{hotkey}:{uuid}"
    last = nonces.get(key)
    if (last is not None and nonce <= last) or (last is None and nonce < time.time_ns() - 16 * 10**9):
        return "nonce"
    nonces[key] = nonce
    return None


_keys: dict[str, bytes] = {}


def _public_key(address: str, decode: Any) -> bytes:
    key = _keys.get(address)
    if key is None:
        key = _keys[address] = decode(address)
    return key


#: Set by ``--cprofile``: SIGUSR1 starts profiling the loop thread, SIGUSR2 stops it.
_profiler: Any = None


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if _profiler is not None:
        loop.add_signal_handler(signal.SIGUSR1, _profiler.enable)
        loop.add_signal_handler(signal.SIGUSR2, _profiler.disable)
    await stop.wait()


async def serve_echo(port: int, verified: bool) -> None:
    from axon_grpc.auth.keys import Keypair

    hotkey = Keypair.generate().ss58_address
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_Echo(verified, hotkey),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    announce(port=bound, hotkey=hotkey)
    await _wait_for_signal()
    await server.stop(None)


#: Set to "unbounded" by the envoy-open target: no open rate or session bounds.
SESSIONS_ENV = "AXON_GRPC_BENCH_SESSIONS"


def build_dummy_axon(
    port: int | None,
    http_port: int | None = None,
    run_async: bool = False,
    seed: str | None = None,
    nonce_store: str | None = None,
    inline: bool = False,
    metrics: bool = True,
) -> Any:
    """The measured axon, unstarted: Dummy, blacklist + priority, default verify; the sync
    forward on the pool, or on the loop with ``inline``, or the async one with ``run_async``.

    ``seed`` (hex) fixes the hotkey, so several workers sign as one axon; ``nonce_store``
    is a store URL (``redis://...``) instead of the in-memory default.
    """
    from axon_grpc.auth.keys import Keypair
    from axon_grpc.auth.wallet import KeypairWallet
    from axon_grpc.cli.demo import Dummy, blacklist, forward, priority
    from axon_grpc.server.axon import Axon

    async def forward_async(synapse: Dummy) -> Dummy:
        return forward(synapse)

    wallet = KeypairWallet(Keypair.create_from_seed(seed)) if seed else KeypairWallet.generate()
    sessions: Any = True
    if os.environ.get(SESSIONS_ENV) == "unbounded":  # the envoy-open target: every open is answered
        from axon_grpc.auth.session_table import SessionPolicy

        big = 1 << 30
        sessions = SessionPolicy(
            per_address=big, total=big, open_rate=1e9, open_burst=big, open_rate_per_address=1e9,
            open_burst_per_address=big,
        )  # fmt: skip
    axon = Axon(
        wallet=wallet,
        ip="127.0.0.1",
        external_ip="127.0.0.1",
        port=port,
        http_port=http_port,
        nonce_store=nonce_store,
        metrics=metrics,
        sessions=sessions,
    )
    axon.attach(
        forward_fn=forward_async if run_async else forward, blacklist_fn=blacklist, priority_fn=priority, inline=inline
    )
    return axon


async def serve_axon(
    port: int,
    http_port: int | None,
    run_async: bool = False,
    inline: bool = False,
    metrics: bool = True,
    edge: bool = False,
) -> None:
    axon = build_dummy_axon(port, http_port, run_async, inline=inline, metrics=metrics)
    await axon.start_async(edge=edge)
    envoy = axon.proxy.pid if axon.proxy is not None else None
    announce(port=axon.port, http_port=axon.http_port, hotkey=axon.wallet.hotkey.ss58_address, envoy_pid=envoy)
    await _wait_for_signal()
    await axon.stop_async(grace=None)


def serve_workers(port: int, workers: int, nonce_store: str) -> int:
    """The ``grpc`` axon in ``workers`` processes on one port, until SIGTERM/SIGINT."""
    import functools
    import threading

    from axon_grpc.auth.keys import Keypair
    from axon_grpc.server.workers import WorkerGroup

    from .servers import build_dummy_axon

    # The factory by its importable name (not ``__main__``'s): the spawned workers unpickle it.

    seed = os.urandom(32).hex()
    # The port through the workers' settings (BT_AXON_PORT): with 0, the first worker binds a port
    # the system picks and the others join it there.
    os.environ["BT_AXON_PORT"] = str(port)
    factory = functools.partial(build_dummy_axon, None, seed=seed, nonce_store=nonce_store)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    group = WorkerGroup(factory, workers, grace=None, start_timeout=60)
    group.start()
    try:
        announce(
            port=group.port,
            hotkey=Keypair.create_from_seed(seed).ss58_address,
            worker_pids=group.pids,
            nonce_store=nonce_store,
        )
        dead = group.wait(stop)
        if dead is not None:
            print(f"worker {dead.pid} exited with status {dead.exitcode}", file=sys.stderr, flush=True)
            return 1
        return 0
    finally:
        group.stop()


#: How the bench hands the edge's axon factory its port and hotkey seed (Envoy imports it).
EDGE_PORT_ENV, EDGE_SEED_ENV = "AXON_GRPC_BENCH_PORT", "AXON_GRPC_BENCH_SEED"


def edge_axon() -> Any:
    """The ``grpc-async`` target's axon, as ``axon-grpc serve`` imports it inside Envoy."""
    return build_dummy_axon(int(os.environ[EDGE_PORT_ENV]), run_async=True, seed=os.environ[EDGE_SEED_ENV])


def serve_edge(port: int, app: str | None = None) -> int:
    """``edge_axon`` under ``axon-grpc serve`` (one Envoy process), or another ASGI ``app``
    on the same edge, until SIGTERM/SIGINT."""
    from axon_grpc.auth.keys import Keypair
    from axon_grpc.edge.serve import APP, build_servers, pyvoy_missing, run

    missing = pyvoy_missing()
    if missing is not None:
        print(missing, file=sys.stderr, flush=True)
        return 2
    seed = os.urandom(32).hex()
    os.environ.update({EDGE_PORT_ENV: str(port), EDGE_SEED_ENV: seed})
    servers = build_servers("bench.servers:edge_axon", address="127.0.0.1", port=port, app=app or APP)

    def ready(started: list[Any]) -> None:
        announce(
            port=started[0].listener_port,
            hotkey=Keypair.create_from_seed(seed).ss58_address,
            worker_pids=[server._process.pid for server in started],
        )

    return asyncio.run(run(servers, grace=1.0, drain_file=None, ready=ready))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--workers", type=int, help="grpc-Nw-redis: worker processes (default N)")
    parser.add_argument("--nonce-store", help="grpc-Nw-redis: the shared store, redis://HOST:PORT/DB")
    parser.add_argument(
        "--cprofile",
        help="profile the serving loop with cProfile between SIGUSR1 and SIGUSR2; write the stats here at exit",
    )
    args = parser.parse_args(argv)
    if args.kind.endswith("-redis"):
        if not args.nonce_store:
            parser.error(f"{args.kind} needs --nonce-store redis://HOST:PORT/DB")
        if args.cprofile:
            parser.error(f"--cprofile profiles the serving process; {args.kind} serves from worker processes")
        return serve_workers(args.port, args.workers or int(args.kind[5]), args.nonce_store)
    if args.kind == "envoy":
        return serve_edge(args.port)
    if args.kind == "envoy-echo-verified":
        return serve_edge(args.port, app="bench.edge_echo:app")
    if args.kind in ("echo", "echo-verified"):
        coro = serve_echo(args.port, args.kind == "echo-verified")
    else:
        if args.kind == "http" and args.http_port is None:
            parser.error("http needs --http-port")
        coro = serve_axon(
            args.port,
            args.http_port if args.kind == "http" else None,
            args.kind.startswith("grpc-async") or args.kind == "library-edge",
            args.kind == "grpc-inline",
            not args.kind.endswith("-nometrics"),
            edge=args.kind == "library-edge",
        )
    if not args.cprofile:
        asyncio.run(coro)
        return 0
    import cProfile

    global _profiler
    _profiler = cProfile.Profile()
    try:
        asyncio.run(coro)
    finally:
        _profiler.disable()
        _profiler.dump_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
