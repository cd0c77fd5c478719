"""Starting ``pyvoy`` on loopback for the edge tests (skipped where it cannot be installed)."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pyvoy_missing() -> str | None:
    """Why the Envoy edge cannot run here, or None."""
    if sys.version_info < (3, 11):
        return "pyvoy needs Python 3.11+"
    try:
        import pyvoy  # noqa: F401
    except ImportError:
        return "pyvoy is not installed (it ships Envoy for glibc Linux amd64/arm64 and macOS arm64)"
    return None


requires_pyvoy = pytest.mark.skipif(pyvoy_missing() is not None, reason=str(pyvoy_missing()))


#: The line a server prints once it listens, with the port it bound: ``axon-grpc serve`` on Envoy,
#: the ``pyvoy`` command, ``axon-grpc serve`` on grpcio.
LISTENING = re.compile(
    r"^(?:axon-grpc: Envoy serving gRPC and legacy HTTP|pyvoy listening|axon-grpc: serving \[.*\])"
    r" on 127\.0\.0\.1:(\d+)"
)


@dataclass
class Served:
    """A server process started on a port it picked, and what it printed on stderr."""

    process: subprocess.Popen[str]
    port: int
    lines: list[str]
    reader: threading.Thread

    def output(self, timeout: float = 10.0) -> list[str]:
        """Every line printed, once the process has closed its stderr."""
        self.reader.join(timeout)
        return self.lines


def start_server(command: list[str], env: dict[str, str], timeout: float = 60.0) -> Served:
    """Start ``command`` (a server told to bind port 0) and return once it printed the port it
    listens on. Its stderr is read to the end and passed on to this process's stderr."""
    process = subprocess.Popen(
        command, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    found: queue.Queue[int | None] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                lines.append(line.rstrip("\n"))
                sys.stderr.write(line)
                match = LISTENING.search(line)
                if match:
                    found.put(int(match.group(1)))
        found.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        port = found.get(timeout=timeout)
    except queue.Empty:
        stop(process)
        raise RuntimeError(f"the server printed no listening port within {timeout} s: {lines[-5:]}") from None
    if port is None:
        raise RuntimeError(f"the server exited with status {process.wait()}: {lines[-5:]}")
    return Served(process, port, lines, reader)


def start_on_a_picked_port(
    command: Callable[[int], list[str]], env: dict[str, str], timeout: float = 30.0, attempts: int = 5
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``command(port)``, a program that takes a port number only (Envoy in ``axon-grpc
    front``), on a port the system picked a moment ago; on another one when the program exits
    saying the port was taken since. Returns once the program listens."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with tempfile.TemporaryFile() as err:
            process = subprocess.Popen(command(port), env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stderr=err)
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        return process, port
                except OSError:
                    time.sleep(0.05)
            stop(process)
            err.seek(0)
            output = err.read().decode(errors="replace")
            sys.stderr.write(output)
        if "address already in use" not in output.lower():
            raise RuntimeError(f"the server did not listen within {timeout} s (exit status {process.returncode})")
    raise RuntimeError(f"{attempts} picked ports were taken")


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def stop(process: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


def run_pyvoy(app: str, **env: str) -> Iterator[int]:
    """Serve ``app`` with the ``pyvoy`` command on a loopback port Envoy picks; yields the port."""
    served = start_server(
        [
            str(Path(sys.executable).with_name("pyvoy")),
            app,
            "--address",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "error",
        ],
        environment(**env),
    )
    try:
        yield served.port
    finally:
        stop(served.process)
