"""A fleet on one machine, for tests and the fault run: each host in a network namespace of its own.

:class:`Lab` makes a Linux bridge with the first address of a free ``10.77.N.0/24``
and one namespace per host, joined to the bridge by a veth pair, with the next
addresses. The namespaces have no default route: nothing they send leaves the
machine. The process that makes the lab (root: ``ip netns``) is the callers' host,
at the bridge's address. :meth:`Lab.close` kills every process started in the lab
and removes the namespaces and the bridge.

The fleet's application is :func:`build_axon`: an ``Echo`` synapse whose answer names
the host that ran it and the caller's address as the axon saw it (``dendrite.ip``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from axon_grpc.auth.keys import Keypair
from axon_grpc.auth.wallet import KeypairWallet
from axon_grpc.server.axon import Axon
from axon_grpc.synapse import Synapse

SEED_ENV = "AXON_FLEET_SEED"
HOST_ENV = "AXON_FLEET_HOST"
DEFAULT_SEED = "0x" + "5a" * 32
APP = "axon_grpc.fleet_lab:build_axon"
#: Fixed ports: each host binds them in a network namespace of its own, on its own address, so
#: no other program on the machine can take one between the pick and the bind.
AXON_PORT = 8091
ADMIN_PORT = 9901
REDIS_PORT = 6379
SENTINEL_PORT = 26379
SERVICE = "axon"


class Echo(Synapse):
    """Doubles ``input``; says which host answered and whom it saw calling."""

    input: int = 0
    output: Optional[int] = None
    caller_ip: str = ""
    host: str = ""

    required_hash_fields = ("input",)


def echo(synapse: Echo) -> Echo:
    synapse.output = synapse.input * 2
    synapse.caller_ip = (synapse.dendrite.ip if synapse.dendrite else None) or ""
    synapse.host = os.environ.get(HOST_ENV, "")
    return synapse


def hotkey() -> Keypair:
    return Keypair.create_from_seed(os.environ.get(SEED_ENV) or DEFAULT_SEED)


def build_axon() -> Axon:
    """The fleet's axon factory: one hotkey on every host, the rest from ``BT_AXON_*``."""
    axon = Axon(wallet=KeypairWallet(hotkey()))
    axon.attach(forward_fn=echo)
    return axon


def netns_missing() -> str | None:
    """Why network namespaces cannot be made here (one line), or None."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"axfprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _used_subnets() -> set[int]:
    text = _ip("-4", "-o", "addr", "show").stdout
    return {int(m) for m in re.findall(r"inet 10\.77\.(\d+)\.", text)}


def _remove_stale() -> None:
    """Namespaces and bridges of labs whose process is gone (a run killed before its clean-up)."""
    names = _ip("netns", "list", check=False).stdout.split()
    for name in names:
        m = re.fullmatch(r"axf(\d+)-\w+", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _ip("netns", "del", name, check=False)
    for m in re.finditer(r"^\d+: (axf(\d+)b)[:@]", _ip("-o", "link", "show").stdout, re.M):
        if not Path(f"/proc/{m.group(2)}").exists():
            _ip("link", "del", m.group(1), check=False)


def wait_for_port(address: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process for {address}:{port} exited with status {process.returncode}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {address}:{port} after {timeout} s")


def redis_command(address: str, port: int, *, args: list[str] | None = None) -> str:
    """One command to a Redis (or Sentinel) node through redis-cli; its output."""
    result = subprocess.run(
        ["redis-cli", "-h", address, "-p", str(port), *(args or [])], capture_output=True, text=True, timeout=10
    )
    return result.stdout.strip()


@dataclass
class Host:
    """A namespace with one address on the lab's bridge."""

    name: str
    namespace: str
    address: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


class Lab:
    """A bridge and hosts in namespaces (see the module); a context manager."""

    def __init__(self, directory: str | None = None) -> None:
        _remove_stale()
        self.tag = f"axf{os.getpid()}"
        used = _used_subnets()
        free = [n for n in range(10, 250) if n not in used]
        if not free:
            raise RuntimeError("no free 10.77.N.0/24 for the lab")
        self.subnet = f"10.77.{free[0]}"
        self.bridge = f"{self.tag}b"
        self.hosts: list[Host] = []
        self._temporary = None if directory else tempfile.TemporaryDirectory(prefix="axon-grpc-fleet-")
        self.directory = Path(directory or self._temporary.name)  # type: ignore[union-attr]
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    @property
    def gateway(self) -> str:
        """The bridge's address: where the lab's callers (this process) call from."""
        return f"{self.subnet}.1"

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 2
        namespace = f"{self.tag}-{name}"
        veth = f"{self.tag}v{index}"
        _ip("netns", "add", namespace)
        host = Host(name, namespace, f"{self.subnet}.{index}")
        self.hosts.append(host)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        return host

    def start(
        self, host: Host, argv: list[str], log: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` inside ``host``'s namespace, in a process group of its own."""
        with open(self.directory / log, "ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", host.namespace, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        host.processes.append(process)
        return process

    @staticmethod
    def signal(process: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)

    def kill_host(self, host: Host) -> float:
        """SIGKILL every process of ``host`` (a machine that lost power); when the signals went."""
        for process in host.processes:
            self.signal(process, signal.SIGKILL)
        killed = time.monotonic()
        for process in host.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        host.processes.clear()
        return killed

    def close(self) -> None:
        for host in self.hosts:
            self.kill_host(host)
        for host in self.hosts:
            _ip("netns", "del", host.namespace, check=False)
        _ip("link", "del", self.bridge, check=False)
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Redis

    def redis(self, host: Host, *, replica_of: Host | None = None, cluster: bool = False) -> subprocess.Popen[bytes]:
        folder = self.directory / f"redis-{host.name}"
        folder.mkdir(exist_ok=True)
        argv = [
            "redis-server",
            "--port",
            str(REDIS_PORT),
            "--bind",
            host.address,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--protected-mode",
            "no",
            "--maxmemory-policy",
            "noeviction",
            "--repl-diskless-sync-delay",  # a replica's full sync starts at once (default: 5 s later)
            "0",
        ]
        if replica_of is not None:
            argv += ["--replicaof", replica_of.address, str(REDIS_PORT)]
        if cluster:
            argv += [
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "1000",
                "--cluster-config-file",
                "nodes.conf",
                # The other primaries' slots stay served while one primary's are lost (by
                # default every node answers CLUSTERDOWN until its replica is promoted).
                "--cluster-require-full-coverage",
                "no",
            ]
        process = self.start(host, argv, f"redis-{host.name}.log")
        wait_for_port(host.address, REDIS_PORT, 10, process)
        return process

    def sentinel(self, host: Host, primary: Host, quorum: int, down_after_ms: int = 1000) -> subprocess.Popen[bytes]:
        folder = self.directory / f"sentinel-{host.name}"
        folder.mkdir(exist_ok=True)
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port {SENTINEL_PORT}\nbind {host.address}\nprotected-mode no\ndir {folder}\n"
            f"sentinel monitor {SERVICE} {primary.address} {REDIS_PORT} {quorum}\n"
            f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        process = self.start(host, ["redis-server", str(conf), "--sentinel"], f"sentinel-{host.name}.log")
        wait_for_port(host.address, SENTINEL_PORT, 10, process)
        return process

    def sentinel_url(self, sentinels: list[Host], wait_replicas: int = 0) -> str:
        nodes = ",".join(f"{h.address}:{SENTINEL_PORT}" for h in sentinels)
        return f"redis+sentinel://{nodes}/{SERVICE}/0" + (f"?wait_replicas={wait_replicas}" if wait_replicas else "")

    def primary_of(self, sentinel: Host) -> str:
        reply = redis_command(
            sentinel.address, SENTINEL_PORT, args=["SENTINEL", "get-master-addr-by-name", SERVICE]
        ).split()
        return reply[0] if reply else ""

    def wait_replicated(self, primary: Host, replicas: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = redis_command(primary.address, REDIS_PORT, args=["INFO", "replication"])
            if f"connected_slaves:{replicas}" in info and info.count("state=online") >= replicas:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{primary.name} has not {replicas} replicas online after {timeout} s")

    def wait_sentinels(self, sentinel: Host, others: int, replicas: int, timeout: float = 15) -> None:
        """Until ``sentinel`` knows the other sentinels and the replicas (a failover needs them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = redis_command(sentinel.address, SENTINEL_PORT, args=["SENTINEL", "master", SERVICE])
            fields = dict(zip(reply.split("\n")[::2], reply.split("\n")[1::2]))
            if int(fields.get("num-other-sentinels", 0)) >= others and int(fields.get("num-slaves", 0)) >= replicas:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the sentinel on {sentinel.name} did not see its peers after {timeout} s")

    def create_cluster(self, nodes: list[Host], replicas: int = 1, timeout: float = 30) -> None:
        for node in nodes:
            self.redis(node, cluster=True)
        result = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"{n.address}:{REDIS_PORT}" for n in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout[-400:]} {result.stderr[-400:]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [redis_command(n.address, REDIS_PORT, args=["CLUSTER", "INFO"]) for n in nodes]
            if all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.2)
        raise RuntimeError("the cluster is not ok")

    def cluster_url(self, nodes: list[Host], wait_replicas: int = 0) -> str:
        joined = ",".join(f"{n.address}:{REDIS_PORT}" for n in nodes)
        return f"redis+cluster://{joined}" + (f"?wait_replicas={wait_replicas}" if wait_replicas else "")

    # The axon

    def backend(
        self, host: Host, store_url: str, front: Host, *, drain_delay: float = 2.0, grace: float = 5.0
    ) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "axon_grpc",
            "serve",
            APP,
            "--axon.ip",
            host.address,
            "--axon.port",
            str(AXON_PORT),
            "--axon.nonce_store",
            store_url,
            "--trusted-front",
            f"{front.address}/32",
            "--drain-delay",
            str(drain_delay),
            "--grace",
            str(grace),
        ]
        return self.start(host, argv, f"backend-{host.name}.log", {HOST_ENV: host.name})

    def front(self, host: Host, backends: list[Host], *extra: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "axon_grpc",
            "front",
            "--listen",
            f"{host.address}:{AXON_PORT}",
            "--admin",
            f"{host.address}:{ADMIN_PORT}",
            *extra,
        ]
        for backend in backends:
            argv += ["--backend", f"{backend.address}:{AXON_PORT}"]
        process = self.start(host, argv, f"front-{host.name}.log")
        wait_for_port(host.address, AXON_PORT, 20, process)
        wait_for_port(host.address, ADMIN_PORT, 20, process)
        return process

    def wait_ready(self, host: Host, process: subprocess.Popen[bytes], log: str, timeout: float = 40) -> None:
        """Until ``host`` listens on the axon's port; the log's end in the error otherwise."""
        try:
            wait_for_port(host.address, AXON_PORT, timeout, process)
        except RuntimeError as e:
            raise RuntimeError(f"{e}; {log}: {self.log(log)[-1500:]}") from None

    def log(self, name: str) -> str:
        path = self.directory / name
        return path.read_text(errors="replace") if path.exists() else ""


__all__ = ["APP", "AXON_PORT", "Echo", "Host", "Lab", "build_axon", "netns_missing"]


def front_hosts(admin: str) -> dict[str, dict[str, Any]]:
    """Each backend's state in the front (``/clusters?format=json``): health flags and request count."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://{admin}/clusters?format=json", timeout=2) as reply:
        data = json.loads(reply.read())
    hosts: dict[str, dict[str, Any]] = {}
    for cluster in data.get("cluster_statuses", []):
        for status in cluster.get("host_statuses", []):
            address = status["address"]["socket_address"]["address"]
            stats = {s["name"]: int(s.get("value", 0)) for s in status.get("stats", [])}
            flags = {k for k, v in status.get("health_status", {}).items() if v is True}
            eds = status.get("health_status", {}).get("eds_health_status", "HEALTHY")
            hosts[address] = {"flags": flags, "eds": eds, "rq_total": stats.get("rq_total", 0)}
    return hosts


def in_pool(state: dict[str, Any]) -> bool:
    """Whether the front would send a request to this host."""
    return not state["flags"]


def pool(admin: str) -> set[str]:
    """The backends the front sends requests to now (``OSError`` when its admin does not answer)."""
    return {address for address, state in front_hosts(admin).items() if in_pool(state)}


def wait_pool(admin: str, addresses: set[str], timeout: float) -> float:
    """Wait until the front's pool is exactly ``addresses``; the seconds it took."""
    started = time.monotonic()
    now: set[str] = set()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(OSError):
            now = pool(admin)
        if now == addresses:
            return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"the front's pool is {sorted(now)}, not {sorted(addresses)}, after {timeout} s")
