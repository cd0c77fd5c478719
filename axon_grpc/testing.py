"""A test harness: an axon on a loopback port the system picks and a Dendrite connected to it.

::

    async with serve_axon(forward) as h:
        result = await h.call(Dummy(input=3))
        assert result.output == 6
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping, Union

from axon_grpc.auth.wallet import KeypairWallet
from axon_grpc.client.dendrite import Dendrite
from axon_grpc.info import AxonInfo
from axon_grpc.server.axon import Axon
from axon_grpc.synapse import Synapse

#: A forward function, or the keyword arguments of one ``Axon.attach`` call.
Attachment = Union[Callable[..., Any], Mapping[str, Any]]


@dataclass
class AxonHarness:
    """A started axon, a dendrite, and the info the dendrite calls."""

    axon: Axon
    dendrite: Dendrite
    info: AxonInfo

    async def call(self, synapse: Synapse, timeout: float = 12.0, deserialize: bool = False) -> Any:
        """One call through the dendrite; returns the synapse with its status filled."""
        return await self.dendrite.call(self.info, synapse, timeout=timeout, deserialize=deserialize)


def build_axon(*attachments: Attachment, wallet: Any = None, **axon_kwargs: Any) -> Axon:
    """An unstarted axon with ``attachments`` attached, on a loopback port the system picks
    when it starts.

    It serves directly (``edge=False``) unless ``edge=True`` is given: a test of the
    pipeline needs no Envoy process in front (about 0.4 s more per start); the Envoy edge
    of library mode has tests of its own (tests/edge/test_library_edge.py)."""
    axon_kwargs.setdefault("ip", "127.0.0.1")
    axon_kwargs.setdefault("edge", False)
    axon_kwargs.setdefault("external_ip", "127.0.0.1")
    axon_kwargs.setdefault("port", 0)  # the system picks; axon.port and axon.info() name the bound port
    axon = Axon(wallet=wallet or KeypairWallet.generate(), **axon_kwargs)
    for attachment in attachments:
        if isinstance(attachment, Mapping):
            axon.attach(**attachment)
        else:
            axon.attach(forward_fn=attachment)
    return axon


@asynccontextmanager
async def serve_axon(
    *attachments: Attachment,
    wallet: Any = None,
    client_wallet: Any = None,
    **axon_kwargs: Any,
) -> AsyncIterator[AxonHarness]:
    """Serve ``attachments`` on the running loop for the duration of the block."""
    axon = build_axon(*attachments, wallet=wallet, **axon_kwargs)
    await axon.start_async()
    dendrite = Dendrite(wallet=client_wallet or KeypairWallet.generate())
    try:
        yield AxonHarness(axon=axon, dendrite=dendrite, info=axon.info())
    finally:
        await dendrite.aclose()
        await axon.stop_async(grace=None)


REDIS_MISSING = "redis-server is not installed (apt-get install -y redis-server; `make test` installs it as root)"


class _PortTaken(Exception):
    """redis-server could not bind its port."""


class RedisServer:
    """A real ``redis-server`` on a loopback port, without persistence.

    For tests and benchmarks of the shared nonce store: ``start()`` waits until this
    process answers PING. redis-server takes a port number only (its port 0 means no TCP
    at all): without ``port``, ``start()`` picks a free one and picks again when
    redis-server found it taken since. ``stop()`` and ``restart()`` keep the port (to test
    an outage and a recovery). Without ``directory`` a temporary one is used and removed at
    ``stop()``. Raises ``FileNotFoundError`` when ``redis-server`` is not installed.
    """

    #: Ports tried by a ``start()`` that picks its own.
    PICK_ATTEMPTS = 5

    def __init__(
        self,
        directory: Path | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(REDIS_MISSING)
        self.binary = binary
        #: The port (0 until the first ``start()`` picked one when none was given).
        self.port = port or 0
        self.directory = directory
        self.log_path = log_path
        self.extra_args = extra_args  #: more redis-server options (--replicaof, --cluster-enabled ...)
        self.process: subprocess.Popen[bytes] | None = None
        self._temporary: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> RedisServer:
        pick = self.port == 0
        for attempt in range(1, self.PICK_ATTEMPTS + 1 if pick else 2):
            if pick:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", 0))
                    self.port = int(s.getsockname()[1])
            try:
                return self._start()
            except _PortTaken:
                if not pick or attempt == self.PICK_ATTEMPTS:
                    raise RuntimeError(f"redis-server: port {self.port} is taken") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _start(self) -> RedisServer:
        if self.directory is None and self._temporary is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="axon-grpc-redis-")
        directory = self.directory or Path(self._temporary.name)  # type: ignore[union-attr]
        directory.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or directory / "redis.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(directory),
                    "--protected-mode",
                    "no",
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop(keep_directory=True)
                if "Address already in use" in log_path.read_text(errors="replace"):
                    raise _PortTaken()
                self.stop()
                raise RuntimeError(f"redis-server exited with status {code} (log: {log_path})")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within 10 s (log: {log_path})")

    def ping(self) -> bool:
        """Whether this server (not another process on its port) answers."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"INFO server\r\n")
                reply = b""
                while (found := re.search(rb"process_id:(\d+)\r\n", reply)) is None:
                    chunk = s.recv(65536)
                    if not chunk:
                        return False
                    reply += chunk
        except OSError:
            return False
        return int(found.group(1)) == self.pid

    def stop(self, keep_directory: bool = False) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._temporary is not None and not keep_directory:
            self._temporary.cleanup()
            self._temporary = None

    def restart(self) -> None:
        self.stop(keep_directory=True)
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
