"""The edge under attack: floods against ``axon-grpc serve`` (Envoy) on 127.0.0.1, with figures.

    python scripts/stress_edge.py                 # every flood, the table at the end (make stress)
    python scripts/stress_edge.py --only idle,reset --scale 0.1
    python scripts/stress_edge.py --target echo   # the edge with a minimal application
    python scripts/stress_edge.py --target library         # axon.start(): behind its Envoy (default)
    python scripts/stress_edge.py --target library-direct  # axon.start(edge=False)
    python scripts/stress_edge.py --target library-direct --nofile 1024:1024 --only idle

Each flood is bounded in count and time and runs while a legitimate client calls the
server (four calls at a time, each with a deadline). For each flood the table gives the
legitimate calls' success rate and p99, the server's RSS growth (Envoy processes and
the command, summed), what happened to the attacking connections, and whether the
server was healthy afterwards. Goals (issue 12): >= 99 % of legitimate calls OK with
p99 < 1 s, RSS growth < 200 MB, idle and half-sent connections closed within the
configured timeouts, healthy afterwards.

The target (``--target axon``, the default) is a full axon under ``axon-grpc serve``
(``build_axon`` below: a signed ``Dummy`` synapse, its pipeline, the HTTP bridge, health
and reflection), called by the project's Dendrite, each call signed. ``--target echo``
is the edge with a minimal application instead: the gRPC adapter and the health service
inside Envoy, behind a pipeline that refuses calls without the right metadata before
reading their body, as the axon's refuses an unsigned call. ``--target library`` is the
same full axon in library mode, ``axon.start()`` in a process of its own (this script's
``--serve-library``): through the Envoy process it starts by default, or directly with
``library-direct``; the HTTP bridge is on (the public port serves the legacy protocol
behind Envoy; directly, it has a port of its own, where the HTTP floods go). ``--nofile
SOFT:HARD`` sets the server's open-files limits first. All traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from axon_grpc import Synapse  # noqa: E402

TOKEN = "stress-" + os.urandom(8).hex() if __name__ == "__main__" else os.environ.get("STRESS_TOKEN", "")
LEGIT_METHOD = "/axon.v1.Axon/Echo"

# -- the served application (imported inside Envoy as stress_edge:app) -------------------------


def _build_app() -> Any:
    from axon_grpc.edge.app import EdgeApp
    from axon_grpc.server.call import Outcome
    from axon_grpc.transports.asgi_health import Health
    from axon_grpc.transports.grpc_asgi import GrpcAsgi

    class Pipeline:
        """Refuses calls without the token before reading their body; echoes the others."""

        async def handle(self, call: Any) -> Outcome:
            if call.headers.get("x-stress-token") != TOKEN:
                return Outcome(401, "Not Verified", synapse=None)  # type: ignore[arg-type]
            body = call.body if call.body is not None else await call.read_body()
            return Outcome(200, "Success", synapse=body)  # type: ignore[arg-type]

    class Codec:
        reply_message = staticmethod(lambda outcome: outcome.synapse)
        trailing_metadata = staticmethod(lambda outcome: ())
        status_code = staticmethod(lambda outcome: 0 if outcome.ok else 16)

    async def legacy(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    health = Health(("axon.v1.Axon",), drain_file=os.environ.get("AXON_GRPC_EDGE_DRAIN_FILE"))
    grpc_app = GrpcAsgi(
        Pipeline(),
        Codec(),
        max_message_bytes=4 * 1024 * 1024,  # type: ignore[arg-type]
        services=health.methods(),
    )  # type: ignore[arg-type]
    return EdgeApp(grpc_app, legacy, health)


if __name__ != "__main__" and TOKEN:
    app = _build_app()

#: The axon's hotkey seed for ``--target axon`` (the client signs for its address).
AXON_SEED = os.environ.get("STRESS_AXON_SEED") or "0x" + os.urandom(32).hex()


def build_axon() -> Any:
    """The full axon ``axon-grpc serve stress_edge:build_axon`` runs: ``Dummy`` doubles its input."""
    from axon_grpc import Axon
    from axon_grpc.auth.keys import Keypair
    from axon_grpc.auth.wallet import KeypairWallet

    axon = Axon(wallet=KeypairWallet(Keypair.create_from_seed(AXON_SEED)))
    axon.attach(forward_fn=_double)
    return axon


def serve_library(port: int, http_port: int, edge: bool) -> None:
    """``--serve-library``: ``build_axon()``'s axon under ``axon.start(edge=...)`` until SIGTERM;
    prints one JSON line (``pid``, ``envoy_pid``, the bound ``port`` and ``http_port``: 0 picks)
    once serving."""
    import json
    import threading

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    axon = build_axon()
    axon.ip = axon.external_ip = "127.0.0.1"
    axon.port = axon.external_port = port
    axon.http_port = http_port
    axon.start(edge=edge)
    proxy = axon.proxy
    ports = {"port": axon.port, "http_port": axon.http_port}
    print(json.dumps({"pid": os.getpid(), "envoy_pid": proxy.pid if proxy else None, **ports}), flush=True)
    while not stopping.wait(0.5):
        pass
    axon.stop(grace=2)


class Dummy(Synapse):
    input: int = 0
    output: Optional[int] = None


def _double(synapse: Dummy) -> Dummy:
    synapse.output = 2 * synapse.input
    return synapse


# -- measuring -------------------------------------------------------------------------------


def tree_pids(root: int) -> set[int]:
    """``root`` and its descendants (``/proc``)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    data = f.read()
                parents[int(entry)] = int(data[data.rindex(b")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    pids, frontier = {root}, [root]
    while frontier:
        current = frontier.pop()
        for pid, parent in parents.items():
            if parent == current and pid not in pids:
                pids.add(pid)
                frontier.append(pid)
    return pids


def tree_rss_bytes(root: int) -> int:
    """RSS of ``root`` and its descendants (``/proc``)."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            continue
    return total


def tree_cpu_seconds(root: int) -> float:
    """User plus system CPU seconds of ``root`` and its live descendants (``/proc``)."""
    total = 0.0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            fields = data[data.rindex(b")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return total


@dataclass
class Legit:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0

    def summary(self) -> tuple[int, float, float]:
        total = len(self.latencies) + self.failures
        ok = 100.0 * len(self.latencies) / total if total else 0.0
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3 if ordered else float("nan")
        return total, ok, p99


async def legit_client(port: int, stop: asyncio.Event, result: Legit, concurrency: int = 4) -> None:
    import grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(LEGIT_METHOD)

        async def worker() -> None:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    reply = await call(b"legit", timeout=5, metadata=(("x-stress-token", TOKEN),))
                    assert reply == b"legit"
                    result.latencies.append(time.monotonic() - began)
                except Exception:
                    result.failures += 1
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def axon_info(port: int, seed: str = "") -> Any:
    """The AxonInfo of ``build_axon()``'s axon (hotkey from ``seed``, default ``AXON_SEED``) on ``port``."""
    from axon_grpc.auth.keys import Keypair
    from axon_grpc.info import AxonInfo

    hotkey = Keypair.create_from_seed(seed or AXON_SEED).ss58_address
    return AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=hotkey, coldkey="")


async def signed_client(port: int, stop: asyncio.Event, result: Legit, concurrency: int = 4) -> None:
    """Legitimate calls to the full axon: the project's Dendrite, each call signed, 5 s deadline."""
    from axon_grpc import Dendrite

    info = axon_info(port)
    async with Dendrite() as dendrite:

        async def worker(offset: int) -> None:
            count = offset
            while not stop.is_set():
                began = time.monotonic()
                count += concurrency
                answer = await dendrite.call(info, Dummy(input=count), timeout=5, deserialize=False)
                if answer.dendrite.status_code == 200 and answer.output == 2 * count:
                    result.latencies.append(time.monotonic() - began)
                else:
                    result.failures += 1
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))


async def healthy(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except Exception:
        return False


# -- raw HTTP/2 ------------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _hpack_literal(name: bytes, value: bytes) -> bytes:
    """A header as an HPACK literal without indexing, new name, no Huffman (lengths < 127)."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def grpc_headers(port: int, path: bytes = LEGIT_METHOD.encode()) -> bytes:
    return b"".join(
        _hpack_literal(k, v)
        for k, v in (
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", path),
            (b":authority", f"127.0.0.1:{port}".encode()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        )
    )


class H2Connection:
    """A bare HTTP/2 client connection: writes frames, reads the server's, acks SETTINGS, and
    keeps the send windows (the connection's and each stream's) the server grants."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.goaway = False
        self.closed_at: float | None = None
        self.window = 65535
        self.initial_stream_window = 65535
        self.stream_windows: dict[int, int] = {}
        self.ended: set[int] = set()  #: streams the server reset or answered to the end
        self.granted = asyncio.Event()  #: set on each WINDOW_UPDATE, RST_STREAM or end
        self._task = asyncio.ensure_future(self._read())

    def open_stream(self, stream: int) -> None:
        self.stream_windows[stream] = self.initial_stream_window

    def sendable(self, stream: int) -> int:
        """Bytes of DATA stream ``stream`` may send now (0 once the server ended it)."""
        if stream in self.ended or self.closed_at is not None:
            return 0
        return max(0, min(self.window, self.stream_windows.get(stream, 0)))

    def send_data(self, stream: int, payload: bytes) -> None:
        self.window -= len(payload)
        self.stream_windows[stream] -= len(payload)
        self.writer.write(h2_frame(DATA, 0, stream, payload))

    def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            for offset in range(0, len(payload) - 5, 6):
                key, value = struct.unpack(">HI", payload[offset : offset + 6])
                if key == 4:  # SETTINGS_INITIAL_WINDOW_SIZE applies to open streams too
                    for open_stream in self.stream_windows:
                        self.stream_windows[open_stream] += value - self.initial_stream_window
                    self.initial_stream_window = value
            self.writer.write(h2_frame(SETTINGS, ACK, 0))
        elif kind == WINDOW_UPDATE:
            increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if stream == 0:
                self.window += increment
            elif stream in self.stream_windows:
                self.stream_windows[stream] += increment
            self.granted.set()
        elif kind == RST_STREAM or (flags & END_STREAM and kind in (HEADERS, DATA)):
            self.ended.add(stream)
            self.granted.set()
        elif kind == GOAWAY:
            self.goaway = True

    @classmethod
    async def open(cls, port: int) -> H2Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PREFACE + h2_frame(SETTINGS, 0, 0))
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while True:
                head = await self.reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags = head[3], head[4]
                stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                payload = await self.reader.readexactly(length) if length else b""
                self._frame(kind, flags, stream, payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            self.closed_at = time.monotonic()
            self.granted.set()

    def close(self) -> None:
        self._task.cancel()
        self.writer.close()


# -- the floods -------------------------------------------------------------------------------

Flood = Callable[[int, argparse.Namespace], Awaitable[str]]


async def _hold_until_closed(readers: list[asyncio.StreamReader], limit_s: float) -> list[float | None]:
    began = time.monotonic()

    async def one(reader: asyncio.StreamReader) -> float | None:
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, OSError):
            pass
        return time.monotonic() - began

    tasks = [asyncio.ensure_future(one(r)) for r in readers]
    done, pending = await asyncio.wait(tasks, timeout=limit_s)
    for task in pending:
        task.cancel()
    return [t.result() if t in done and not t.cancelled() else None for t in tasks]


def _closed_summary(times: list[float | None]) -> str:
    closed = sorted(t for t in times if t is not None)
    if not closed:
        return f"0/{len(times)} closed"
    return f"{len(closed)}/{len(times)} closed, last after {closed[-1]:.1f} s"


async def flood_idle(port: int, options: argparse.Namespace) -> str:
    """Connections that never send a byte."""
    count = int(2000 * options.scale)
    writers, readers = [], []
    for _ in range(count):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        readers.append(reader)
        writers.append(writer)
    times = await _hold_until_closed(readers, options.idle_timeout + 5)
    for writer in writers:
        writer.close()
    return f"{len(readers)} idle: " + _closed_summary(times)


async def flood_slow(port: int, options: argparse.Namespace) -> str:
    """Connections sending a request head one byte every 10 s."""
    count = int(200 * options.scale)
    head = f"POST /Dummy HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    pairs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]

    async def drip(writer: asyncio.StreamWriter) -> None:
        try:
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(10)
        except (ConnectionError, OSError):
            pass

        except asyncio.CancelledError:
            pass

    drips = [asyncio.ensure_future(drip(w)) for _, w in pairs]
    times = await _hold_until_closed([r for r, _ in pairs], options.headers_timeout + 15)
    for task in drips:
        task.cancel()
    for _, writer in pairs:
        writer.close()
    return f"{count} slow heads: " + _closed_summary(times)


async def flood_headers(port: int, options: argparse.Namespace) -> str:
    """1 GiB of request headers over 4 connections at a time (reconnecting when closed)."""
    budget = int(1024**3 * options.scale)
    share = budget // 4
    line = b"X-Flood: " + b"a" * 8000 + b"\r\n"
    chunk = line * 8
    deadline = time.monotonic() + options.flood_seconds
    refused = {"431": 0, "closed": 0}

    async def one() -> int:
        sent = 0
        while sent < share and time.monotonic() < deadline:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /Dummy HTTP/1.1\r\nHost: x\r\n")
            try:
                while sent < share and time.monotonic() < deadline:
                    writer.write(chunk)
                    sent += len(chunk)
                    await asyncio.wait_for(writer.drain(), 2)
                    if reader.at_eof() or writer.is_closing():
                        break
            except (ConnectionError, OSError, asyncio.TimeoutError):
                pass
            try:
                answer = await asyncio.wait_for(reader.read(64), 1)
                refused["431" if b" 431 " in answer else "closed"] += 1
            except (ConnectionError, OSError, asyncio.TimeoutError):
                refused["closed"] += 1
            writer.close()
        return sent

    sent = sum(await asyncio.gather(*(one() for _ in range(4))))
    return f"{sent / 1024**2:.0f} MiB sent; {refused['431']} answered 431, {refused['closed']} cut"


async def _one_head(port: int, start: bytes, filler: int, end: bytes) -> str:
    """Send ``start``, ``filler`` bytes of "a", then ``end`` on one connection, while reading:
    what the server answered (its status line) and how much was sent by then."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(reader.read(64))
    writer.write(start)
    sent, chunk = len(start), b"a" * 65536
    try:
        while sent < len(start) + filler and not answer.done():
            writer.write(chunk[: min(len(chunk), len(start) + filler - sent)])
            sent += min(len(chunk), len(start) + filler - sent)
            await asyncio.wait_for(writer.drain(), 5)
        writer.write(end)
        await asyncio.wait_for(writer.drain(), 5)
        reply = await asyncio.wait_for(answer, 10)
    except (ConnectionError, OSError, asyncio.TimeoutError):
        reply = answer.result() if answer.done() and not answer.exception() else b""
    writer.close()
    status = reply.split(b"\r\n", 1)[0].decode("latin-1") or "closed, no answer"
    return f"{status} after {sent / 1024**2:.1f} MiB sent"


async def flood_big_head(port: int, options: argparse.Namespace) -> str:
    """One request whose header block is 200 MiB (one header value)."""
    size = int(200 * 1024**2 * options.scale)
    return "one header block: " + await _one_head(
        port, b"POST /Dummy HTTP/1.1\r\nHost: x\r\nX-Big: ", size, b"\r\n\r\n"
    )


async def flood_big_target(port: int, options: argparse.Namespace) -> str:
    """One request whose target (URL) is 100 MiB."""
    size = int(100 * 1024**2 * options.scale)
    return "one request target: " + await _one_head(port, b"GET /", size, b" HTTP/1.1\r\nHost: x\r\n\r\n")


async def flood_half_sent(port: int, options: argparse.Namespace) -> str:
    """gRPC calls announcing a 4 MiB message and sending all of it but its last byte, as fast
    as the server's flow-control windows allow, then waiting (unsigned calls)."""
    count = int(200 * options.scale)
    announced = 4 * 1024 * 1024
    per_connection = 10
    connections = [await H2Connection.open(port) for _ in range((count + per_connection - 1) // per_connection)]
    headers = grpc_headers(port, b"/axon.v1.Axon/Dummy")
    pending: dict[tuple[int, int], int] = {}  # (connection, stream) -> message bytes still to send
    for index in range(count):
        connection, stream = connections[index // per_connection], 1 + 2 * (index % per_connection)
        connection.open_stream(stream)
        connection.writer.write(h2_frame(HEADERS, END_HEADERS, stream, headers))
        connection.send_data(stream, struct.pack(">BI", 0, announced))
        pending[(index // per_connection, stream)] = announced - 1  # the last byte never comes
    chunk = b"\x00" * 16384
    sent = 0
    deadline = time.monotonic() + options.flood_seconds
    while pending and time.monotonic() < deadline:
        for connection in connections:
            connection.granted.clear()
        progressed = False
        for (number, stream), left in list(pending.items()):
            connection = connections[number]
            size = min(left, connection.sendable(stream), len(chunk))
            if connection.closed_at is not None or stream in connection.ended:
                del pending[(number, stream)]
            elif size > 0:
                connection.send_data(stream, chunk[:size])
                pending[(number, stream)] = left - size
                sent += size
                progressed = True
        try:
            await asyncio.wait_for(asyncio.gather(*(c.writer.drain() for c in connections)), 5)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass
        if not progressed:
            waits = [asyncio.ensure_future(c.granted.wait()) for c in connections]
            await asyncio.wait(waits, timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            for wait in waits:
                wait.cancel()
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    alive = sum(1 for c in connections if c.closed_at is None)
    refused = sum(len(c.ended) for c in connections)
    for connection in connections:
        connection.close()
    return (
        f"{count} half-sent 4 MiB calls on {len(connections)} connections: {sent / 1024**2:.1f} MiB accepted, "
        f"{refused} calls ended by the server; {alive} connections still open"
    )


async def flood_reset(port: int, options: argparse.Namespace) -> str:
    """HTTP/2 streams opened and reset at once (the rapid-reset attack)."""
    total = int(100_000 * options.scale)
    headers = grpc_headers(port, b"/axon.v1.Axon/Dummy")
    sent = goaways = connections = cut = 0
    deadline = time.monotonic() + options.flood_seconds
    while sent < total and time.monotonic() < deadline:
        try:
            connection = await H2Connection.open(port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        connections += 1
        stream_id = 1
        try:
            while sent < total and stream_id < 2**31 - 2 and time.monotonic() < deadline:
                batch = bytearray()
                for _ in range(100):
                    batch += h2_frame(HEADERS, END_HEADERS, stream_id, headers)
                    batch += h2_frame(RST_STREAM, 0, stream_id, struct.pack(">I", 8))
                    stream_id += 2
                connection.writer.write(bytes(batch))
                sent += 100
                await asyncio.wait_for(connection.writer.drain(), 2)
                if connection.goaway or connection.closed_at is not None:
                    break
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.05)
        goaways += connection.goaway
        cut += connection.closed_at is not None
        connection.close()
    return f"{sent} streams reset on {connections} connections; {cut} closed by the server, {goaways} with GOAWAY"


FLOODS: dict[str, Flood] = {
    "idle": flood_idle,
    "slow": flood_slow,
    "headers": flood_headers,
    "big-head": flood_big_head,
    "big-target": flood_big_target,
    "half-sent": flood_half_sent,
    "reset": flood_reset,
}


# -- running ----------------------------------------------------------------------------------


#: Floods over HTTP/1.1: against library-direct they go to the bridge's own port.
HTTP_FLOODS = {"slow", "headers", "big-head", "big-target"}


def library_command(port: int, http_port: int, edge: bool, nofile: str | None = None) -> list[str]:
    """The command serving ``build_axon()`` in library mode (``--serve-library``)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-library", str(port), "--http-port"]
    command += [str(http_port), "--edge", "1" if edge else "0"]
    return command + (["--nofile", nofile] if nofile else [])


def start_server(port: int, options: argparse.Namespace) -> subprocess.Popen[bytes]:
    path = os.pathsep.join([str(ROOT / "scripts"), str(ROOT)])
    if options.target.startswith("library"):
        env = dict(os.environ, STRESS_AXON_SEED=AXON_SEED, PYTHONPATH=path)
        command = library_command(port, options.http_port, options.target == "library", options.nofile)
        process = subprocess.Popen(command, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert process.stdout is not None
        process.stdout.readline()  # serving
        return _wait_serving(process, port)
    if options.target == "axon":
        env = dict(os.environ, STRESS_AXON_SEED=AXON_SEED, PYTHONPATH=path)
        env.pop("STRESS_TOKEN", None)
        command = [
            sys.executable,
            "-m",
            "axon_grpc",
            "serve",
            "stress_edge:build_axon",
            "--app-dir",
            str(ROOT / "scripts"),
            "--axon.ip",
            "127.0.0.1",
            "--axon.port",
            str(port),
            "--grace",
            "2",
            f"--edge.idle_timeout_s={options.idle_timeout}",
            f"--edge.request_headers_timeout_s={options.headers_timeout}",
        ]
        return _wait_serving(
            subprocess.Popen(command, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port
        )
    env = dict(os.environ, STRESS_TOKEN=TOKEN, PYTHONPATH=path)
    code = (
        "import sys; from axon_grpc.edge.config import EdgeLimits; from axon_grpc.edge.serve import serve; "
        f"sys.exit(serve('unused:unused', address='127.0.0.1', port={port}, grace=2.0, app='stress_edge:app', "
        f"limits=EdgeLimits(idle_timeout_s={options.idle_timeout}, "
        f"request_headers_timeout_s={options.headers_timeout})))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return _wait_serving(process, port)


def _wait_serving(process: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the edge did not start")


async def run_flood(name: str, flood: Flood, port: int, pid: int, options: argparse.Namespace) -> list[str]:
    legit = Legit()
    stop = asyncio.Event()
    rss_before = tree_rss_bytes(pid)
    peak = rss_before

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(pid))
            await asyncio.sleep(0.5)

    signed = options.target != "echo"
    client = asyncio.ensure_future((signed_client if signed else legit_client)(port, stop, legit))
    sampler = asyncio.ensure_future(sample())
    cpu_before = tree_cpu_seconds(pid)
    began = time.monotonic()
    target_port = options.http_port if options.target == "library-direct" and name in HTTP_FLOODS else port
    try:
        outcome = await flood(target_port, options)
    except Exception as e:  # a flood that could not run says why in its row
        outcome = f"flood failed: {type(e).__name__}: {e}"
    elapsed = time.monotonic() - began
    stop.set()
    await asyncio.gather(client, sampler)
    total, ok, p99 = legit.summary()
    await asyncio.sleep(0.5)
    return [
        name,
        f"{elapsed:.0f} s",
        f"{total}",
        f"{ok:.1f} %",
        f"{p99:.0f} ms",
        f"{(peak - rss_before) / 1024**2:+.0f} MB",
        f"{tree_cpu_seconds(pid) - cpu_before:.1f} s",
        "yes" if await healthy(port) else "NO",
        outcome,
    ]


def print_table(rows: list[list[str]]) -> None:
    header = [
        "flood", "time", "legit calls", "legit OK", "legit p99", "RSS growth", "server CPU", "healthy after", "attack"
    ]  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


async def main(options: argparse.Namespace) -> int:
    from axon_grpc.edge.config import raise_open_files_limit
    from axon_grpc.edge.serve import free_port  # a manual tool: a port free a moment ago

    raise_open_files_limit()
    port = free_port("127.0.0.1")
    options.http_port = free_port("127.0.0.1")
    process = start_server(port, options)
    rows = []
    try:
        target = {
            "axon": "a full axon under axon-grpc serve (signed Dendrite calls)",
            "echo": "the echo application",
            "library": "a full axon, axon.start() behind its Envoy (signed Dendrite calls)",
            "library-direct": "a full axon, axon.start(edge=False) (signed Dendrite calls)",
        }[options.target]
        limits = (
            "every limit at its default"
            if options.target.startswith("library")
            else f"idle timeout {options.idle_timeout:g} s, request-headers timeout {options.headers_timeout:g} s, "
            "other limits at their defaults"
        )
        print(f"edge serving {target} on 127.0.0.1:{port} (pid {process.pid}); {limits}", flush=True)
        for name in options.only.split(","):
            row = await run_flood(name, FLOODS[name], port, process.pid, options)
            print("  ".join(row), flush=True)
            rows.append(row)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(FLOODS), help=f"floods to run (default: all of {','.join(FLOODS)})")
    parser.add_argument(
        "--target",
        choices=("axon", "echo", "library", "library-direct"),
        default="axon",
        help="axon: a full axon under axon-grpc serve (default); echo: the edge's minimal application; "
        "library: axon.start() (behind its Envoy); library-direct: axon.start(edge=False)",
    )
    parser.add_argument("--nofile", default=None, help="SOFT:HARD open-files limits of the library server")
    parser.add_argument("--serve-library", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--http-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--edge", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each flood's count (default 1)")
    parser.add_argument("--flood-seconds", type=float, default=10.0, help="time bound of the timed floods (default 10)")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        help="the edge's idle timeout for this run, to see it act (default 10 s; serve's default 300)",
    )
    parser.add_argument("--headers-timeout", type=float, default=10.0, help="request-headers timeout (default 10 s)")
    arguments = parser.parse_args()
    if arguments.serve_library is not None:
        if arguments.nofile:
            import resource

            soft, _, hard = arguments.nofile.partition(":")
            resource.setrlimit(resource.RLIMIT_NOFILE, (int(soft), int(hard or soft)))
        serve_library(arguments.serve_library, arguments.http_port, bool(arguments.edge))
        sys.exit(0)
    sys.exit(asyncio.run(main(arguments)))
