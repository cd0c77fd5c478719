"""Redis for the tests of the shared nonce store: the harness's server, and when to skip."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from axon_grpc.testing import REDIS_MISSING, RedisServer

#: Why Redis tests cannot run here (None when they can).
MISSING_REASON = None if shutil.which("redis-server") else REDIS_MISSING


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


__all__ = ["MISSING_REASON", "RedisServer", "SentinelServer", "in_ci", "redis_cli"]


class SentinelServer:
    """A real Redis Sentinel on a loopback port watching ``primary`` as service ``axon``.

    redis-server takes a port number only: ``start()`` picks one and picks again when the
    sentinel found it taken since (as :class:`RedisServer` does)."""

    def __init__(self, directory: Path, primary_port: int, *, quorum: int = 1, down_after_ms: int = 500) -> None:
        self.port = 0
        self.directory = directory
        self.primary_port, self.quorum, self.down_after_ms = primary_port, quorum, down_after_ms
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "sentinel.conf"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelServer:
        for _ in range(RedisServer.PICK_ATTEMPTS):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                self.port = int(s.getsockname()[1])
            if self._start():
                return self
        raise RuntimeError(f"redis sentinel: {RedisServer.PICK_ATTEMPTS} ports were taken")

    def _start(self) -> bool:
        """Whether the sentinel listens on ``self.port`` (False: the port was taken)."""
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.directory}\n"
            f"sentinel monitor axon 127.0.0.1 {self.primary_port} {self.quorum}\n"
            f"sentinel down-after-milliseconds axon {self.down_after_ms}\n"
            "sentinel failover-timeout axon 5000\n"
        )
        log_path = self.directory / f"sentinel-{self.port}.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", str(self.conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                if "Address already in use" in log_path.read_text(errors="replace"):
                    return False
                raise RuntimeError(f"redis sentinel exited (log: {log_path})")
            if redis_cli(self.port, "INFO", "server").find(f"process_id:{self.process.pid}") >= 0:
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis sentinel did not start")

    def primary(self) -> int:
        """The port of the primary this sentinel names now."""
        reply = redis_cli(self.port, "SENTINEL", "get-master-addr-by-name", "axon").split()
        return int(reply[1]) if len(reply) > 1 else 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    ).stdout.strip()
