"""The servers a benchmark measures: started in their own processes, or given by address."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .servers import READY_PREFIX

#: Label and one-line description of each target, in report order.
TARGETS: dict[str, tuple[str, str]] = {
    "grpc": (
        "axon-grpc gRPC",
        "the project's Axon over gRPC: Dummy, sync forward, blacklist + priority, default verify",
    ),
    "grpc-async": (
        "axon-grpc gRPC, async forward",
        "the same with the forward declared async: it runs on the loop, no hand-off to a worker thread",
    ),
    "grpc-async-nometrics": (
        "axon-grpc gRPC, async forward, metrics off",
        "grpc-async built with Axon(metrics=False): what the Prometheus metrics cost",
    ),
    "grpc-inline": (
        "axon-grpc gRPC, inline sync forward",
        "the sync forward attached with inline=True: it runs on the loop, no thread hop",
    ),
    "grpc-1w-redis": (
        "axon-grpc gRPC, 1 worker + Redis",
        (
            "the same run as grpc-2w-redis with one worker: the Redis store's cost without a second "
            "process (not in the default run)"
        ),
    ),
    "grpc-2w-redis": (
        "axon-grpc gRPC, 2 workers + Redis",
        (
            "the grpc target as two worker processes on one port (SO_REUSEPORT, axon_grpc.server.workers), "
            "nonces in a private redis-server"
        ),
    ),
    "envoy": (
        "axon-grpc on Envoy, gRPC",
        "the grpc-async target's axon under axon-grpc serve (Envoy through pyvoy); CPU of the process tree",
    ),
    "envoy-echo-verified": (
        "bare verified echo on Envoy",
        "the verified echo's checks as an ASGI gRPC app on the same Envoy edge: its floor",
    ),
    "envoy-http": (
        "axon-grpc on Envoy, legacy HTTP",
        "legacy 10.5 requests to the same axon-grpc serve port (Envoy's HTTP/1.1)",
    ),
    "library-edge": (
        "axon-grpc library mode behind Envoy",
        "the grpc-async target's axon under axon.start()'s default: its own Envoy process in front "
        "(Unix sockets behind it); CPU of the process and its Envoy",
    ),
    "envoy-session": (
        "axon-grpc on Envoy, gRPC, session calls",
        "the envoy target called with axon-session/1: one session per connection, a MAC per call, no signature",
    ),
    "grpc-async-session": (
        "axon-grpc gRPC, async forward, session calls",
        "the grpc-async target called with axon-session/1 sessions",
    ),
    "envoy-forged-signature": (
        "axon-grpc on Envoy, forged signatures",
        "the envoy target flooded with legacy calls whose signature does not verify (each refused 401)",
    ),
    "envoy-forged-mac": (
        "axon-grpc on Envoy, forged session MACs",
        "the envoy target flooded with calls of a real session whose MAC is wrong (each refused 401)",
    ),
    "envoy-open": (
        "axon-grpc on Envoy, session opens",
        "the envoy target's axon (open rate and session bounds lifted) answering signed Session/Open handshakes",
    ),
    "envoy-open-flood": (
        "axon-grpc on Envoy, open flood",
        "the envoy target with its default session policy, flooded with one open replayed (rate-limited or refused)",
    ),
    "http": ("axon-grpc HTTP bridge", "the project's Axon through its HTTP bridge, legacy 10.5 requests"),
    "echo": ("bare grpc.aio echo", "grpc.aio generic handler returning the request bytes (the ceiling)"),
    "echo-verified": (
        "bare verified echo",
        "the echo + one SHA3-256 of the body, one sr25519 verify, one dict nonce check",
    ),
    "legacy": ("legacy SDK 10.5.0 axon", "bittensor==10.5.0 Axon (FastAPI, uvicorn h11) serving the same Dummy"),
}
TRANSPORTS = {
    "grpc": "grpc",
    "grpc-async": "grpc",
    "grpc-async-nometrics": "grpc",
    "grpc-inline": "grpc",
    "envoy": "grpc",
    "envoy-echo-verified": "grpc",
    "envoy-http": "http",
    "envoy-session": "grpc",
    "grpc-async-session": "grpc",
    "envoy-forged-signature": "grpc",
    "envoy-forged-mac": "grpc",
    "envoy-open": "grpc",
    "envoy-open-flood": "grpc",
    "library-edge": "grpc",
    "grpc-1w-redis": "grpc",
    "grpc-2w-redis": "grpc",
    "http": "http",
    "echo": "grpc",
    "echo-verified": "grpc",
    "legacy": "http",
}
#: What the load generators send to a target (:mod:`.load`), when not signed legacy calls; and the
#: target whose server it calls (the same server process, started the same way).
LOADS = {
    "envoy-session": ("session", "envoy"),
    "grpc-async-session": ("session", "grpc-async"),
    "envoy-forged-signature": ("forged-signature", "envoy"),
    "envoy-forged-mac": ("forged-mac", "envoy"),
    "envoy-open": ("open", "envoy"),
    "envoy-open-flood": ("open-flood", "envoy"),
}
#: Server environment of a target (read by :mod:`.servers`): the open target lifts the session bounds.
SERVER_ENV = {"envoy-open": {"AXON_GRPC_BENCH_SESSIONS": "unbounded"}}
#: Targets served by worker processes (axon_grpc.server.workers) with the Redis store: how many workers.
WORKER_TARGETS = {"grpc-1w-redis": 1, "grpc-2w-redis": 2}
START_TIMEOUT_S = 60.0
#: The project's checkout, which holds this package.
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Target:
    """One thing to measure: where it listens, which key it signs for, whose CPU to read."""

    name: str
    transport: str  #: "grpc" or "http"
    host: str
    port: int
    hotkey: str
    pid: int | None  #: the server process whose CPU time is read (None: not measured)
    label: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: What the generators send (:data:`LOADS`): "signed" legacy calls unless the target says.
    load: str = "signed"
    process: subprocess.Popen[str] | None = None
    log_path: Path | None = None
    #: Worker processes serving behind ``pid`` (their CPU is summed with its own).
    worker_pids: list[int] = field(default_factory=list)
    #: Helper processes measured apart, not as the server's CPU: name -> pid (e.g. "redis").
    aux_pids: dict[str, int] = field(default_factory=dict)
    #: Run after the server stops (e.g. stop the target's redis-server).
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def workers(self) -> int:
        return max(1, len(self.worker_pids))

    @property
    def server_pids(self) -> list[int]:
        """Every process whose CPU counts as the server's: the one started, and its workers."""
        return ([self.pid] if self.pid else []) + [p for p in self.worker_pids if p != self.pid]

    def stop(self) -> None:
        """Stop the server process this benchmark started (SIGTERM, then SIGKILL), then its helpers."""
        try:
            self._stop_process()
        finally:
            cleanups, self.cleanups = self.cleanups, []
            for cleanup in reversed(cleanups):
                cleanup()

    def _stop_process(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)


class TargetUnavailable(RuntimeError):
    """A target that cannot be started here (the reason is printed and the target skipped)."""


def _read_ready(process: subprocess.Popen[str], log_path: Path, timeout: float) -> dict[str, Any]:
    import json

    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        readable, _, _ = select.select([process.stdout], [], [], 0.2)
        if readable:
            line = process.stdout.readline()
            if line.startswith(READY_PREFIX):
                return dict(json.loads(line[len(READY_PREFIX) :]))
            if not line and process.poll() is not None:
                break
    if process.poll() is None:
        process.kill()
        process.wait(5)
        reason = f"did not report ready within {timeout:.0f} s"
    else:
        reason = f"exited with status {process.returncode}"
    process.stdout.close()
    tail = ""
    try:
        lines = log_path.read_text(errors="replace").strip().splitlines()
        tail = (": " + lines[-1]) if lines else ""
    except OSError:
        pass
    raise TargetUnavailable(f"server {reason}{tail} (log: {log_path})")


def _spawn(
    command: list[str], log_path: Path, env: dict[str, str] | None = None, *, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log: IO[str] = open(log_path, "w")
    if env is None:  # ``-m bench.servers`` imports this folder's package from the project's checkout
        env = dict(os.environ, **(extra_env or {}))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env
        )
    finally:
        log.close()
    return process, _read_ready(process, log_path, START_TIMEOUT_S)


def default_legacy_python() -> Path | None:
    """A Python with ``bittensor==10.5.0``: ``$AXON_GRPC_LEGACY_PYTHON``, else ``.venv/legacy``
    (as ``make bench`` builds it) in the current folder or the project's checkout."""
    env = os.environ.get("AXON_GRPC_LEGACY_PYTHON")
    if env:
        return Path(env)
    for root in (Path.cwd(), ROOT):
        candidate = root / ".venv" / "legacy" / "bin" / "python"
        if candidate.exists():
            return candidate
    return None


def _started(
    name: str,
    ready: dict[str, Any],
    process: subprocess.Popen[str],
    log_path: Path,
    extra: dict[str, Any] | None = None,
    *,
    port_key: str = "port",
    **more: Any,
) -> Target:
    """The :class:`Target` of a server this benchmark started, from its ready line."""
    label, description = TARGETS[name]
    return Target(
        name, TRANSPORTS.get(name, "grpc"), "127.0.0.1", int(ready[port_key]), ready["hotkey"], int(ready["pid"]),
        label, description, extra or {}, LOADS.get(name, ("signed", name))[0], process, log_path, **more,
    )  # fmt: skip


def start_target(name: str, logs: Path, *, legacy_python: Path | None = None, cprofile: Path | None = None) -> Target:
    """Start target ``name`` in its own process on loopback ports it binds (port 0: the system
    picks, and the server's ready line names them); raises TargetUnavailable."""
    log_path = logs / f"server-{name}.log"
    port = 0
    server = LOADS.get(name, ("signed", name))[1]  # the server process a load target calls
    if name == "legacy":
        if legacy_python is None or not legacy_python.exists():
            raise TargetUnavailable(
                "no Python with bittensor==10.5.0 (run `make bench`, which builds .venv/legacy, "
                "or pass --legacy-python / set AXON_GRPC_LEGACY_PYTHON)"
            )
        script = Path(__file__).with_name("legacy_server.py")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        process, ready = _spawn([str(legacy_python), str(script), "--port", str(port)], log_path, env)
        return _started(
            name, ready, process, log_path, {"bittensor": ready.get("bittensor"), "python": str(legacy_python)}
        )
    if name in WORKER_TARGETS:
        return _start_workers_with_redis(name, port, logs, log_path, WORKER_TARGETS[name])
    if server in ("envoy", "envoy-http", "envoy-echo-verified"):
        kind = "envoy-echo-verified" if server == "envoy-echo-verified" else "envoy"
        command = [sys.executable, "-m", "bench.servers", kind, "--port", str(port)]
        process, ready = _spawn(command, log_path, extra_env=SERVER_ENV.get(name))
        pids = [int(p) for p in ready["worker_pids"]]
        return _started(name, ready, process, log_path, {"envoy_pids": pids}, worker_pids=pids)
    command = [sys.executable, "-m", "bench.servers", server, "--port", str(port)]
    if name == "http":
        command += ["--http-port", "0"]
    if cprofile is not None:
        command += ["--cprofile", str(cprofile)]
    process, ready = _spawn(command, log_path)
    proxied = [int(ready["envoy_pid"])] if ready.get("envoy_pid") else []
    port_key = "http_port" if name == "http" else "port"
    if proxied:  # the server's CPU is its own and its Envoy's
        return _started(name, ready, process, log_path, {"envoy_pids": proxied}, port_key=port_key, worker_pids=proxied)
    return _started(name, ready, process, log_path, port_key=port_key)


def _start_workers_with_redis(name: str, port: int, logs: Path, log_path: Path, workers: int) -> Target:
    """A private redis-server, then ``workers`` axon processes on ``port`` sharing it."""
    from .redis_server import LocalRedis, redis_binary

    if redis_binary() is None:
        from .redis_server import MISSING

        raise TargetUnavailable(MISSING)
    redis = LocalRedis(logs / f"redis-{name}.log")
    try:
        redis.start()
    except RuntimeError as e:
        raise TargetUnavailable(str(e)) from None
    try:
        command = [
            sys.executable,
            "-m",
            "bench.servers",
            name,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--nonce-store",
            redis.url,
        ]
        process, ready = _spawn(command, log_path)
    except BaseException:
        redis.stop()
        raise
    assert redis.pid is not None
    extra = {
        "workers": workers,
        "worker_pids": ready["worker_pids"],
        "nonce_store": redis.url,
        "redis_pid": redis.pid,
        "redis_version": redis.version(),
    }
    return _started(
        name, ready, process, log_path, extra, worker_pids=[int(p) for p in ready["worker_pids"]],
        aux_pids={"redis": redis.pid}, cleanups=[redis.stop],
    )  # fmt: skip


def discover_hotkey(transport: str, host: str, port: int) -> str | None:
    """The axon's hotkey from the terminal info of an unsigned call (which it refuses)."""
    if transport == "grpc":
        import grpc

        with grpc.insecure_channel(f"{host}:{port}") as channel:
            try:
                channel.unary_unary("/axon.v1.Axon/Synapse")(b"", timeout=5)
            except grpc.RpcError as e:
                for key, value in e.trailing_metadata() or ():  # type: ignore[attr-defined]
                    if key == "bt_header_axon_hotkey":
                        return str(value)
        return None
    import http.client

    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("POST", "/Synapse", body=b"{}", headers={"Content-Type": "application/json"})
        return connection.getresponse().getheader("bt_header_axon_hotkey")
    except OSError:
        return None
    finally:
        connection.close()


def external_target(address: str, hotkey: str | None, pid: int | None) -> Target:
    """A server given by ``[grpc://|http://]HOST:PORT`` (default gRPC); CPU read only with ``pid``."""
    transport = "grpc"
    if "://" in address:
        scheme, address = address.split("://", 1)
        if scheme not in ("grpc", "http"):
            raise ValueError(f"--address scheme must be grpc:// or http://, not {scheme}://")
        transport = scheme
    host, _, port_text = address.rstrip("/").rpartition(":")
    if not host or not port_text.isdigit():
        raise ValueError(f"--address needs HOST:PORT, not {address!r}")
    host = host.strip("[]")
    hotkey = hotkey or discover_hotkey(transport, host, int(port_text))
    if not hotkey:
        raise ValueError("could not learn the axon's hotkey from an unsigned call: pass --axon-hotkey")
    return Target(
        "external",
        transport,
        host,
        int(port_text),
        hotkey,
        pid,
        f"{transport}://{host}:{port_text}",
        "a server given by --address",
    )
