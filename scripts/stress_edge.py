"""The edge under attack: floods against ``axon-grpc serve`` (Envoy) on 127.0.0.1, with figures.

    python scripts/stress_edge.py                 # every flood, the table at the end (make stress)
    python scripts/stress_edge.py --only idle,reset --scale 0.1
    python scripts/stress_edge.py --target echo   # the edge with a minimal application

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
reading their body, as the axon's refuses an unsigned call. All traffic goes to
127.0.0.1 only.
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


class Dummy(Synapse):
    input: int = 0
    output: Optional[int] = None


def _double(synapse: Dummy) -> Dummy:
    synapse.output = 2 * synapse.input
    return synapse


# -- measuring -------------------------------------------------------------------------------


def tree_rss_bytes(root: int) -> int:
    """RSS of ``root`` and its descendants (``/proc``)."""
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
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
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


async def signed_client(port: int, stop: asyncio.Event, result: Legit, concurrency: int = 4) -> None:
    """Legitimate calls to the full axon: the project's Dendrite, each call signed, 5 s deadline."""
    from axon_grpc import Dendrite
    from axon_grpc.auth.keys import Keypair
    from axon_grpc.info import AxonInfo

    info = AxonInfo(
        version=0,
        ip="127.0.0.1",
        port=port,
        ip_type=4,
        hotkey=Keypair.create_from_seed(AXON_SEED).ss58_address,
        coldkey="",
    )
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
    """A bare HTTP/2 client connection: writes frames, reads the server's, acks SETTINGS."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.goaway = False
        self.closed_at: float | None = None
        self._task = asyncio.ensure_future(self._read())

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
                if length:
                    await self.reader.readexactly(length)
                if kind == SETTINGS and not flags & ACK:
                    self.writer.write(h2_frame(SETTINGS, ACK, 0))
                elif kind == GOAWAY:
                    self.goaway = True
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            self.closed_at = time.monotonic()

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


async def flood_half_sent(port: int, options: argparse.Namespace) -> str:
    """gRPC calls announcing a 4 MiB message, sending part of it, then waiting."""
    count = int(200 * options.scale)
    per_connection = 10
    connections = [await H2Connection.open(port) for _ in range((count + per_connection - 1) // per_connection)]
    headers = grpc_headers(port, b"/axon.v1.Axon/Dummy")
    stream_id = 1
    for index in range(count):
        connection = connections[index // per_connection]
        body = struct.pack(">BI", 0, 4 * 1024 * 1024) + b"\x00" * (60 * 1024)
        connection.writer.write(h2_frame(HEADERS, END_HEADERS, stream_id, headers))
        connection.writer.write(h2_frame(DATA, 0, stream_id, body[:16384]))
        for offset in range(16384, len(body), 16384):
            connection.writer.write(h2_frame(DATA, 0, stream_id, body[offset : offset + 16384]))
        if index % per_connection == per_connection - 1:
            stream_id = 1
        else:
            stream_id += 2
    for connection in connections:
        await connection.writer.drain()
    await asyncio.sleep(options.flood_seconds)
    alive = sum(1 for c in connections if c.closed_at is None)
    for connection in connections:
        connection.close()
    return f"{count} half-sent 4 MiB calls on {len(connections)} connections; {alive} connections still open"


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
    "half-sent": flood_half_sent,
    "reset": flood_reset,
}


# -- running ----------------------------------------------------------------------------------


def start_server(port: int, options: argparse.Namespace) -> subprocess.Popen[bytes]:
    path = os.pathsep.join([str(ROOT / "scripts"), str(ROOT)])
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

    client = asyncio.ensure_future((signed_client if options.target == "axon" else legit_client)(port, stop, legit))
    sampler = asyncio.ensure_future(sample())
    began = time.monotonic()
    try:
        outcome = await flood(port, options)
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
        "yes" if await healthy(port) else "NO",
        outcome,
    ]


def print_table(rows: list[list[str]]) -> None:
    header = ["flood", "time", "legit calls", "legit OK", "legit p99", "RSS growth", "healthy after", "attack"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


async def main(options: argparse.Namespace) -> int:
    from axon_grpc.edge.config import raise_open_files_limit
    from axon_grpc.edge.serve import free_port  # a manual tool: a port free a moment ago

    raise_open_files_limit()
    port = free_port("127.0.0.1")
    process = start_server(port, options)
    rows = []
    try:
        target = "a full axon (signed Dendrite calls)" if options.target == "axon" else "the echo application"
        print(
            f"edge serving {target} on 127.0.0.1:{port} (pid {process.pid}); idle timeout {options.idle_timeout:g} s, "
            f"request-headers timeout {options.headers_timeout:g} s, other limits at their defaults",
            flush=True,
        )
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
        choices=("axon", "echo"),
        default="axon",
        help="axon: a full axon under axon-grpc serve (default); echo: the edge's minimal application",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each flood's count (default 1)")
    parser.add_argument("--flood-seconds", type=float, default=10.0, help="time bound of the timed floods (default 10)")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        help="the edge's idle timeout for this run, to see it act (default 10 s; serve's default 300)",
    )
    parser.add_argument("--headers-timeout", type=float, default=10.0, help="request-headers timeout (default 10 s)")
    sys.exit(asyncio.run(main(parser.parse_args())))
