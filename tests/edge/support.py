"""Starting ``pyvoy`` on loopback for the edge tests (skipped where it cannot be installed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from axon_grpc.testing import free_port

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


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within {timeout} s")


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


def run_pyvoy(app: str, **env: str) -> Iterator[int]:
    """Serve ``app`` with the ``pyvoy`` command on a free loopback port; yields the port."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("pyvoy")),
            app,
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        env=environment(**env),
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        stop(process)
