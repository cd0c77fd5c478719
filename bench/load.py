"""The load generator: one process, one asyncio loop, many signed client loops.

The runner starts several of these with ``multiprocessing`` (spawn), each with a share
of the level's concurrency. Every client loop is one request in flight at a time, with
its own dendrite uuid (nonces strictly increase per ``{hotkey}:{uuid}``, so concurrent
requests of one uuid would refuse each other) and signs each request afresh:

- gRPC: loops share ``channels`` channels (each its own TCP connection) and call
  ``/axon.v1.Axon/Dummy`` with the Dendrite's metadata (:class:`~.wire.GrpcSigner`).
  Against ``workers`` > 1 processes sharing the port (SO_REUSEPORT: the kernel picks a
  worker per connection, by a hash of its addresses), each channel's first call names its
  worker (the axon uuid in the trailing metadata) and channels are opened until every
  worker holds the same number; the loops then alternate over the workers;
- HTTP: each loop keeps one HTTP/1.1 keep-alive connection (a legacy dendrite's aiohttp
  connector does the same) and sends the legacy request bytes (:class:`~.wire.LegacyHttpRequest`)
  through a minimal client, so the generator spends its CPU on signing, not on parsing.

A target may send something else than signed calls (``GeneratorSpec.load``): calls of
``axon-session/1`` sessions (one per channel, opened before the window), the same with a
wrong MAC, calls with a signature that does not verify, signed ``Session/Open`` handshakes,
or one open replayed (docs/BENCHMARKS.md lists the targets).

Timeline (monotonic clock, shared by all processes on Linux): after every generator
reports ready, the runner sets ``t0``; loops run from ``t0`` to ``t0 + warmup + duration``
and a request counts when it completes inside ``[t0 + warmup, t0 + warmup + duration]``.
"""

from __future__ import annotations

import array
import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

#: Status recorded for a request that got no answer.
CONNECTION_ERROR = "conn-error"
TIMEOUT = "timeout"


@dataclass
class GeneratorSpec:
    """What one generator process runs."""

    index: int
    transport: str  #: "grpc" or "http"
    host: str
    port: int
    axon_hotkey: str
    loops: int  #: concurrent client loops (requests in flight)
    channels: int = 4  #: gRPC channels (connections) shared by the loops
    warmup: float = 1.0
    duration: float = 5.0
    request_timeout: float = 10.0
    workers: int = 1  #: server processes behind the port: spread the channels evenly over them
    #: What each call is (gRPC): "signed" (the legacy scheme), "session" (axon-session/1, one session
    #: per channel), "forged-signature", "forged-mac" (refused floods), "open" (a signed
    #: ``Session/Open`` per call) or "open-flood" (one open replayed).
    load: str = "signed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Recorder:
    """Latencies and statuses of the requests completing inside the window."""

    def __init__(self, window_start: float, window_end: float, counter: Any) -> None:
        self.window_start, self.window_end = window_start, window_end
        self.latencies = array.array("d")
        self.statuses: Counter[str] = Counter()
        self.counter = counter
        self.total = 0
        self.connections_per_worker: dict[str, int] = {}

    def record(self, started: float, ended: float, status: str) -> None:
        self.total += 1
        if self.counter is not None:
            self.counter.value += 1
        if self.window_start <= ended <= self.window_end:
            self.statuses[status] += 1
            if status == "200":
                self.latencies.append(ended - started)


# -- gRPC ---------------------------------------------------------------------------------


def _grpc_status(error: Any) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "bt_header_axon_status_code":
            return str(value)
    return "grpc:" + error.code().name


async def _grpc_loops(spec: GeneratorSpec, wait_go: Any) -> _Recorder:
    import grpc

    from axon_grpc.auth.keys import Keypair

    from .wire import GRPC_METHOD, GrpcSigner, NonceClock, grpc_body, new_uuid

    signer = GrpcSigner(Keypair.generate(), spec.axon_hotkey, grpc_body())
    # A local subchannel pool per channel: each channel gets its own TCP connection.
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.keepalive_time_ms", 60_000)]
    wanted = max(1, min(spec.channels, spec.loops))
    per_worker: dict[str, int] = {}
    if spec.workers > 1:
        channels, per_worker = await _balanced_channels(spec, signer, options, wanted)
    else:
        channels = [grpc.aio.insecure_channel(f"{spec.host}:{spec.port}", options=options) for _ in range(wanted)]
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 15)
    methods = [channel.unary_unary(GRPC_METHOD) for channel in channels]
    call_kind = await _call_kind(spec, signer, channels)
    start, rec = await wait_go()
    rec.connections_per_worker = per_worker
    stop_at = start + spec.warmup + spec.duration
    timeout = spec.request_timeout
    AioRpcError = grpc.aio.AioRpcError
    now = time.monotonic

    async def loop(i: int) -> None:
        rpc = methods[i % len(methods)]
        dendrite_uuid, clock = new_uuid(), NonceClock()
        next_call = call_kind(i, rpc, dendrite_uuid, clock)
        delay = start - now()
        if delay > 0:
            await asyncio.sleep(delay)
        while now() < stop_at:
            rpc_now, message, metadata = next_call()
            began = now()
            try:
                await rpc_now(message, metadata=metadata, timeout=timeout)
                status = "200"
            except AioRpcError as e:
                status = _grpc_status(e)
            except Exception:
                status = CONNECTION_ERROR
            rec.record(began, now(), status)

    try:
        await asyncio.gather(*(loop(i) for i in range(spec.loops)))
    finally:
        for channel in channels:
            await channel.close()
    return rec


async def _call_kind(spec: GeneratorSpec, signer: Any, channels: list[Any]) -> Any:
    """``(loop index, rpc, uuid, nonce clock) -> (() -> (rpc, message, metadata))``: how each loop
    makes its next call for ``spec.load`` (sessions are opened here, before the measured window)."""
    import os

    from axon_grpc.auth.keys import Keypair
    from axon_grpc.auth.session_wire import OPEN_METHOD
    from axon_grpc.client.sessions import open_request, open_session

    from .wire import GRPC_METHOD

    body, timeout_value = signer.body, signer.timeout
    if spec.load == "signed":
        return lambda i, rpc, uuid, clock: lambda: (rpc, body, signer.metadata(uuid, clock()))
    if spec.load == "forged-signature":  # a well-formed call whose signature is another message's
        bogus = "0x" + os.urandom(64).hex()

        def forged(i: int, rpc: Any, uuid: str, clock: Any) -> Any:
            def make() -> tuple[Any, bytes, Any]:
                metadata = list(signer.unsigned_metadata(uuid, clock()))
                return rpc, body, [*metadata, ("bt_header_dendrite_signature", bogus)]

            return make

        return forged
    keypair = Keypair.generate()
    if spec.load in ("session", "forged-mac"):  # one session per channel, as a Dendrite keeps one per axon
        sessions = [await open_session(channel, keypair, spec.axon_hotkey) for channel in channels]
        wrong = "0" * 64

        def sessioned(i: int, rpc: Any, uuid: str, clock: Any) -> Any:
            session = sessions[i % len(sessions)]

            def make() -> tuple[Any, bytes, Any]:
                metadata = session.metadata(GRPC_METHOD, body, timeout_value)
                if spec.load == "forged-mac":
                    metadata = tuple((k, wrong) if k == "axon-session-mac" else (k, v) for k, v in metadata)
                return rpc, body, metadata

            return make

        return sessioned
    opens = [channel.unary_unary(OPEN_METHOD) for channel in channels]
    if spec.load == "open":  # a fresh signed open each time: the handshake's full cost
        return lambda i, rpc, uuid, clock: (
            lambda: (
                opens[i % len(opens)],
                open_request(keypair, spec.axon_hotkey)[0].encode(),
                (),
            )
        )
    if spec.load == "open-flood":  # one signed open, replayed: what a flood costs past the checks
        replayed = open_request(keypair, spec.axon_hotkey)[0].encode()
        return lambda i, rpc, uuid, clock: lambda: (opens[i % len(opens)], replayed, ())
    raise ValueError(f"unknown load {spec.load!r}")


async def _balanced_channels(
    spec: GeneratorSpec, signer: Any, options: list[tuple[str, Any]], wanted: int
) -> tuple[list[Any], dict[str, int]]:
    """``wanted`` channels (at least one per worker) spread evenly over the workers, interleaved.

    Each new channel makes one signed call (before the measured window) and reads which
    worker answered; a channel landing on a worker that already has its share is closed
    and another one opened, up to a bound (then the spread is as it came).
    """
    import grpc

    from .wire import GRPC_METHOD, NonceClock, new_uuid

    wanted = max(wanted, spec.workers)
    share = -(-wanted // spec.workers)  # per worker, rounded up
    probe_uuid, clock = new_uuid(), NonceClock()
    by_worker: dict[str, list[Any]] = {}
    spare: list[Any] = []
    attempts = 0
    while sum(len(c) for c in by_worker.values()) < wanted and attempts < 20 * wanted:
        attempts += 1
        channel = grpc.aio.insecure_channel(f"{spec.host}:{spec.port}", options=options)
        await asyncio.wait_for(channel.channel_ready(), 15)
        call = channel.unary_unary(GRPC_METHOD)(
            signer.body, metadata=signer.metadata(probe_uuid, clock()), timeout=spec.request_timeout
        )
        try:
            await call
        except grpc.aio.AioRpcError:
            pass  # the trailing metadata still names the worker
        worker = next((str(v) for k, v in (await call.trailing_metadata()) or () if k == "bt_header_axon_uuid"), "?")
        held = by_worker.setdefault(worker, [])
        if len(held) < share:
            held.append(channel)
        else:
            spare.append(channel)
    for channel in spare:
        await channel.close()
    # Interleave: channel i is on worker i % workers, so loop i (channel i % n) alternates too.
    ordered: list[Any] = []
    lists = list(by_worker.values())
    for i in range(max(len(held) for held in lists)):
        ordered += [held[i] for held in lists if i < len(held)]
    return ordered, {worker: len(held) for worker, held in by_worker.items()}


# -- HTTP ---------------------------------------------------------------------------------


class _HttpConnection:
    """One keep-alive HTTP/1.1 connection; answers the status of each request."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> str:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        assert reader is not None
        writer.write(data)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head[9:12].decode()
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            await reader.readexactly(int(lower[i + 17 : lower.index(b"\r\n", i + 2)]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        if b"\r\nconnection: close" in lower:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _http_loops(spec: GeneratorSpec, wait_go: Any) -> _Recorder:
    from axon_grpc.auth.keys import Keypair

    from .wire import LegacyHttpRequest, new_uuid

    keypair = Keypair.generate()
    requests = [
        LegacyHttpRequest(keypair, spec.axon_hotkey, spec.host, spec.port, new_uuid()) for _ in range(spec.loops)
    ]
    start, rec = await wait_go()
    stop_at = start + spec.warmup + spec.duration
    now = time.monotonic

    async def loop(i: int) -> None:
        request = requests[i]
        connection = _HttpConnection(spec.host, spec.port)
        delay = start - now()
        if delay > 0:
            await asyncio.sleep(delay)
        while now() < stop_at:
            data = request.render()
            began = now()
            try:
                status = await asyncio.wait_for(connection.request(data), spec.request_timeout)
            except asyncio.TimeoutError:
                status = TIMEOUT
                connection.close()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                status = CONNECTION_ERROR
                connection.close()
                await asyncio.sleep(0.05)
            rec.record(began, now(), status)
        connection.close()

    await asyncio.gather(*(loop(i) for i in range(spec.loops)))
    return rec


# -- process entry ----------------------------------------------------------------------------


async def _run(spec: GeneratorSpec, ready: Any, go: Any, t0: Any, counter: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()

    async def wait_go() -> tuple[float, _Recorder]:
        """Report ready, wait for the runner's go; the start time and the window's recorder."""
        ready.put(spec.index)
        await loop.run_in_executor(None, go.wait)
        start = float(t0.value)
        return start, _Recorder(start + spec.warmup, start + spec.warmup + spec.duration, counter)

    runner = _grpc_loops if spec.transport == "grpc" else _http_loops
    rec = await runner(spec, wait_go)
    return {
        "index": spec.index,
        "latencies": rec.latencies.tobytes(),
        "statuses": dict(rec.statuses),
        "total": rec.total,
        "connections_per_worker": rec.connections_per_worker,
    }


def generator_main(spec: dict[str, Any], ready: Any, go: Any, t0: Any, counter: Any, results: Any) -> None:
    """Process entry point (spawned): run the loops, put the figures on ``results``."""
    s = GeneratorSpec(**spec)
    try:
        out = asyncio.run(_run(s, ready, go, t0, counter))
    except BaseException as e:
        out = {"index": s.index, "error": f"{type(e).__name__}: {e}"}
        ready.put(s.index)
    results.put(out)
