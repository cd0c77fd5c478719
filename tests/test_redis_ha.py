"""The nonce store on highly available Redis: URLs, WAIT for a replica, Sentinel failover, Cluster slots.

Real redis-server processes on loopback: a primary with replicas, a Sentinel, a
three-node Cluster. The fleet of hosts (namespaces, a front, faults) is tested in
tests/test_fleet.py and measured by ``make fleet``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from typing import Callable

import pytest

from axon_grpc.auth.nonces import NonceVerdict
from axon_grpc.auth.redis_ha import parse_target
from axon_grpc.auth.redis_store import RedisNonceStore, is_redis_url, open_nonce_store, redacted
from axon_grpc.errors import ServiceUnavailable

from .redis_support import RedisServer, SentinelServer, redis_cli

ACCEPTED, NOT_NEWER = NonceVerdict.ACCEPTED, NonceVerdict.NOT_NEWER
RETENTION = 60 * 10**9


# URLs


def test_sentinel_and_cluster_urls_are_parsed() -> None:
    t = parse_target("redis+sentinel://u:p%40ss@10.0.0.1:26379,10.0.0.2,[::1]:26380/axon/2?wait_replicas=1")
    assert (t.kind, t.service, t.db, t.wait_replicas, t.wait_timeout_ms) == ("sentinel", "axon", 2, 1, 100)
    assert t.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (t.username, t.password) == ("u", "p@ss")
    c = parse_target("redis+cluster://n1:7000,n2?wait_replicas=2&wait_timeout_ms=50")
    assert (c.kind, c.nodes, c.wait_replicas, c.wait_timeout_ms) == ("cluster", (("n1", 7000), ("n2", 6379)), 2, 50)
    s = parse_target("redis://127.0.0.1:6379/0?wait_replicas=1")
    assert (s.kind, s.url, s.wait_replicas) == ("server", "redis://127.0.0.1:6379/0", 1)
    assert is_redis_url("redis+sentinel://h/axon") and is_redis_url("redis+cluster://h")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis+sentinel://h:26379", "names the service"),
        ("redis+sentinel://h:26379/axon?wait=1", "unknown option"),
        ("redis+sentinel://h:port/axon", "not a port"),
        ("redis+cluster://h/3", "takes no path"),
        ("redis+cluster://h?wait_replicas=-1", ">= 0"),
        ("redis+cluster://h?wait_replicas=1&wait_timeout_ms=0", "wait for ever"),
        ("redis+cluster://h?wait_replicas=x", "must be an integer"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        open_nonce_store(url, retention_ns=RETENTION)


def test_passwords_never_show() -> None:
    url = "redis+sentinel://user:hunter2@s1:26379,s2:26379/axon"
    assert "hunter2" not in redacted(url) and "s2:26379/axon" in redacted(url)
    assert "hunter2" not in repr(RedisNonceStore(url, retention_ns=RETENTION))


# Servers


async def accepts(store: RedisNonceStore, key: str) -> bool:
    """Whether a fresh nonce is accepted (False: refused, the store unavailable)."""
    try:
        return await store.check_and_store(key, time.time_ns(), None) is ACCEPTED
    except ServiceUnavailable:
        await asyncio.sleep(0.05)
        return False


@pytest.fixture
def servers(make_redis_server: Callable[..., RedisServer]) -> Callable[..., RedisServer]:
    """Private redis-servers whose replicas' first full sync starts at once (Redis waits 5 s by default)."""

    def make(*extra: str, port: int | None = None) -> RedisServer:
        return make_redis_server("--repl-diskless-sync-delay", "0", *extra, port=port)

    return make


def cluster_node(servers: Callable[..., RedisServer]) -> RedisServer:
    """A cluster node. redis-server takes a port number only and binds its cluster bus 10,000
    above it: the port is picked below 55,536, and picked again when either was taken."""
    for _ in range(4 * RedisServer.PICK_ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port > 55535:
            continue
        try:
            return servers("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", port=port)
        except RuntimeError as e:
            if "is taken" not in str(e):
                raise
    raise RuntimeError("no port for a cluster node")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not {what} after {timeout} s")


def replicas_online(primary: RedisServer, count: int) -> bool:
    return redis_cli(primary.port, "INFO", "replication").count("state=online") >= count


async def test_wait_replicas_accepts_once_a_replica_has_the_nonce_and_refuses_without_one(
    servers: Callable[..., RedisServer],
) -> None:
    primary = servers()
    replica = servers("--replicaof", "127.0.0.1", str(primary.port))
    wait_until(lambda: replicas_online(primary, 1), 10, "replicating")
    # Bounds wide enough for a loaded machine: the test is of the guarantee, not of the latency.
    store = RedisNonceStore(
        f"{primary.url}?wait_replicas=1&wait_timeout_ms=1000", retention_ns=RETENTION, namespace="wait", timeout_s=10
    )
    try:
        nonce = time.time_ns()
        assert await store.check_and_store("caller", nonce, None) is ACCEPTED
        # The replica holds it the moment the check returns: WAIT counted its acknowledgement.
        assert str(nonce) in redis_cli(replica.port, "GET", store.redis_key("caller"))
        assert await store.check_and_store("caller", nonce, None) is NOT_NEWER
        replica.stop()
        wait_until(lambda: not replicas_online(primary, 1), 10, "without its replica")
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await store.check_and_store("caller", time.time_ns(), None)
        assert time.monotonic() - started < 6  # refused once WAIT's 1 s passed, not at the store's 10 s
    finally:
        await store.close()


async def test_a_sentinel_failover_keeps_every_nonce_accepted_with_wait(
    servers: Callable[..., RedisServer], tmp_path: Path
) -> None:
    primary = servers()
    replicas = [servers("--replicaof", "127.0.0.1", str(primary.port)) for _ in range(2)]
    wait_until(lambda: replicas_online(primary, 2), 10, "replicating")
    sentinel = SentinelServer(tmp_path / "sentinel", primary.port).start()
    wait_until(lambda: "slaves=2" in redis_cli(sentinel.port, "INFO", "sentinel"), 10, "seeing both replicas")
    # Every replica acknowledges each accepted nonce, so whichever Sentinel promotes holds them all.
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/axon/0?wait_replicas=2&wait_timeout_ms=1000"
    store = RedisNonceStore(url, retention_ns=RETENTION, namespace="failover", timeout_s=2)
    try:
        accepted = []
        for i in range(50):
            nonce = time.time_ns()
            assert await store.check_and_store(f"c{i % 5}", nonce, None) is ACCEPTED
            accepted.append((f"c{i % 5}", nonce))
        assert primary.process is not None
        os.kill(primary.process.pid, signal.SIGKILL)  # no goodbye to the replicas
        with pytest.raises(ServiceUnavailable):  # fail closed until a replica is promoted
            await store.check_and_store("c0", time.time_ns(), None)
        wait_until(lambda: sentinel.primary() in (replicas[0].port, replicas[1].port), 15, "failed over")
        # Read back through the promoted replica (a store without WAIT: reading needs no replica).
        after = RedisNonceStore(url.partition("?")[0], retention_ns=RETENTION, namespace="failover", timeout_s=0.3)
        try:
            refused = 0
            while await accepts(after, "probe") is False:  # until the client reaches the promoted replica
                refused += 1
                assert refused < 40
            for key, nonce in accepted:  # every nonce accepted before the failover is still known
                assert await after.check_and_store(key, nonce, None) is NOT_NEWER
        finally:
            await after.close()
    finally:
        await store.close()
        sentinel.stop()


async def test_a_cluster_spreads_callers_over_slots_and_keeps_each_window_on_one(
    servers: Callable[..., RedisServer],
) -> None:
    nodes = [cluster_node(servers) for _ in range(6)]
    create = await asyncio.create_subprocess_exec(
        "redis-cli",
        "--cluster",
        "create",
        *(f"127.0.0.1:{n.port}" for n in nodes),
        "--cluster-replicas",
        "1",
        "--cluster-yes",
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await create.wait() == 0
    wait_until(lambda: all("cluster_state:ok" in redis_cli(n.port, "CLUSTER", "INFO") for n in nodes), 15, "cluster ok")
    primaries = [n for n in nodes if "role:master" in redis_cli(n.port, "INFO", "replication")]
    wait_until(lambda: all(replicas_online(p, 1) for p in primaries), 15, "replicating")
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    store = RedisNonceStore(url, retention_ns=RETENTION, namespace="5Fhotkey", timeout_s=3)
    waiting = RedisNonceStore(
        url + "?wait_replicas=1&wait_timeout_ms=1000", retention_ns=RETENTION, namespace="5Fhotkey", timeout_s=3
    )
    try:
        nonces = {f"caller{i}:uuid": time.time_ns() for i in range(40)}
        for key, nonce in nonces.items():
            assert await store.check_and_store(key, nonce, None) is ACCEPTED
            assert await store.check_and_store(key, nonce - 1, None) is ACCEPTED  # inside the window
        for key, nonce in nonces.items():
            assert await store.check_and_store(key, nonce, None) is NOT_NEWER
        assert store.redis_key("caller1:uuid") == "axon-grpc:5Fhotkey:n:{caller1:uuid}"
        held = [int(redis_cli(p.port, "DBSIZE") or 0) for p in primaries]
        assert sum(held) == 40 and sum(1 for h in held if h) >= 2, held
        for key in list(nonces)[:5]:  # one key per window, on its caller key's slot
            slot = redis_cli(nodes[0].port, "CLUSTER", "KEYSLOT", key)
            assert redis_cli(nodes[0].port, "CLUSTER", "KEYSLOT", store.redis_key(key)) == slot
        # WAIT through the node that holds the key's slot: accepted once its replica has it, then a replay.
        for i in range(20):
            nonce = time.time_ns()
            assert await waiting.check_and_store(f"waiting{i}:uuid", nonce, None) is ACCEPTED
            assert await waiting.check_and_store(f"waiting{i}:uuid", nonce, None) is NOT_NEWER
        strict = RedisNonceStore(url + "?wait_replicas=2", retention_ns=RETENTION, namespace="5Fhotkey", timeout_s=3)
        try:
            with pytest.raises(ServiceUnavailable):  # one replica per primary: WAIT 2 can never be met
                await strict.check_and_store("caller-new:uuid", time.time_ns(), None)
        finally:
            await strict.close()
    finally:
        await store.close()
        await waiting.close()
