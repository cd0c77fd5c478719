"""A real ``redis-server`` on a free loopback port, for the tests of the shared nonce store."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from axon_grpc.testing import free_port

REDIS_SERVER = shutil.which("redis-server")

#: Why Redis tests cannot run here (None when they can).
MISSING_REASON = None if REDIS_SERVER else (
    "redis-server is not installed (apt-get install -y redis-server; `make test` installs it as root)"
)


class RedisServer:
    """One ``redis-server`` process without persistence; stop and restart it on the same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError(MISSING_REASON)
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")
        try:
            self.process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory), "--protected-mode", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_file = self.directory / "redis.log"
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {log_file}")
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


def in_ci() -> bool:
    return bool(os.environ.get("CI"))
