"""Redis for the tests of the shared nonce store: the harness's server, and when to skip."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from axon_grpc.testing import REDIS_MISSING, RedisServer, free_port

#: Why Redis tests cannot run here (None when they can).
MISSING_REASON = None if shutil.which("redis-server") else REDIS_MISSING


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


__all__ = ["MISSING_REASON", "RedisServer", "SentinelServer", "in_ci", "redis_cli"]


class SentinelServer:
    """A real Redis Sentinel on a free loopback port watching ``primary`` as service ``axon``."""

    def __init__(self, directory: Path, primary_port: int, *, quorum: int = 1, down_after_ms: int = 500) -> None:
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {directory}\n"
            f"sentinel monitor axon 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds axon {down_after_ms}\n"
            "sentinel failover-timeout axon 5000\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelServer:
        with open(self.directory / "sentinel.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", str(self.conf), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
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
