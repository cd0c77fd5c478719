"""Library mode's tests: scripts/stress_edge.py's floods and its ``--serve-library`` server."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from axon_grpc import Dendrite
from axon_grpc.edge.proxy import envoy_path

from .support import ROOT, environment, stop


def _load_stress() -> Any:
    spec = importlib.util.spec_from_file_location("stress_edge", ROOT / "scripts" / "stress_edge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stress_edge"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


stress = _load_stress()


def envoy_missing() -> str | None:
    try:
        envoy_path()
    except RuntimeError as e:
        return str(e)
    return None


requires_envoy = pytest.mark.skipif(envoy_missing() is not None, reason=str(envoy_missing()))


def flood_options(**given: Any) -> argparse.Namespace:
    defaults = {"scale": 1.0, "flood_seconds": 5.0, "idle_timeout": 5.0, "headers_timeout": 5.0}
    return argparse.Namespace(**{**defaults, **given})


def children(pid: int) -> dict[int, str]:
    """The live children of ``pid``: ``{pid: command name}`` (``/proc``)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        name = data[data.index(b"(") + 1 : data.rindex(b")")].decode()
        state, parent = data[data.rindex(b")") + 2 :].split()[:2]
        if int(parent) == pid and state != b"Z":
            found[int(entry)] = name
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2 :].split()[0] != b"Z"


class LibraryServer:
    """``build_axon()`` of scripts/stress_edge.py under ``axon.start()`` in a process of its own."""

    def __init__(self, process: subprocess.Popen[bytes], seed: str) -> None:
        self.process = process
        assert process.stdout is not None
        self.started = json.loads(process.stdout.readline() or b"null")
        assert self.started is not None, "the library server did not start"
        port = self.port = int(self.started["port"])  # bound on port 0: the system's pick
        self.http_port = int(self.started["http_port"])
        self.info = stress.axon_info(port, seed)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def envoy_pid(self) -> int | None:
        return self.started["envoy_pid"]  # type: ignore[no-any-return]

    async def call_ok(self, value: int = 21, timeout: float = 5.0, within: float = 0.0) -> bool:
        """A signed call answered right (each attempt with ``timeout``), trying again until
        ``within`` seconds passed (0: one attempt)."""
        deadline = time.monotonic() + within
        async with Dendrite() as dendrite:
            while True:
                answer = await dendrite.call(self.info, stress.Dummy(input=value), timeout=timeout, deserialize=False)
                if answer.dendrite.status_code == 200 and answer.output == 2 * value:
                    return True
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(0.2)


@contextmanager
def library_server(edge: bool, nofile: str | None = None) -> Iterator[LibraryServer]:
    seed = "0x" + os.urandom(32).hex()
    process = subprocess.Popen(
        stress.library_command(0, 0, edge, nofile),
        env=environment(STRESS_AXON_SEED=seed),
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        yield LibraryServer(process, seed)
    finally:
        stop(process, 20)
        assert process.stdout is not None
        process.stdout.close()


async def open_idle(port: int, count: int) -> list[asyncio.StreamWriter]:
    """``count`` connections to ``port`` that send nothing (fewer if refused)."""
    writers = []
    for _ in range(count):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            break
        writers.append(writer)
    return writers
