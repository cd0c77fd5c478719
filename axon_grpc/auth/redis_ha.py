"""Where the nonce store's Redis lives: one server, a primary watched by Sentinel, or a Cluster.

The store's URL names the topology:

- ``redis://host:port/db`` (``rediss://``, ``unix://``): one server (redis-py's URL);
- ``redis+sentinel://[user:password@]s1:26379,s2:26379,s3:26379/SERVICE[/db]``: the
  primary Sentinel names for ``SERVICE``, through redis-py's Sentinel client; after a
  failover, new connections go to the promoted replica;
- ``redis+cluster://[user:password@]n1:6379,n2:6379``: a Redis Cluster through
  redis-py's cluster client, which follows the slot map (and its changes on failover).

What a failover can lose. Redis replicates asynchronously: a script that stored a nonce
on the primary returns before any replica has it. If the primary dies then, the promoted
replica lacks the nonce and would accept the same signed request once more, for as long
as the request is fresh (``VerifyPolicy``: 4 s plus the caller's timeout, up to 30 s of
clock skew). The query option ``wait_replicas=N`` (any topology) closes or narrows that
window: the check is pipelined with ``WAIT N wait_timeout_ms`` on the same connection,
and a nonce is accepted only once N replicas acknowledged it; with fewer, the request is
refused (503 / UNAVAILABLE, fail closed) and the nonce stays stored. With N equal to the
number of replicas, every replica holds every accepted nonce, so whichever is promoted
does: no replay across a failover. With fewer, Sentinel (by the replication offsets it
last read) or the Cluster's election may promote a replica that had not acknowledged
yet: the window is narrowed, not closed. ``WAIT`` also fences a primary cut off from its
replicas: it can still run the script but gets no acknowledgement, so it accepts nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from redis.exceptions import NoScriptError, RedisError

from axon_grpc.auth.nonces import REDIS_URL_SCHEMES

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
#: URL schemes the nonce store understands.
SCHEMES = REDIS_URL_SCHEMES

#: Default ports when a node of a Sentinel or Cluster URL names none.
SENTINEL_PORT = 26379
REDIS_PORT = 6379

#: How long a check waits for the replicas' acknowledgement (``wait_timeout_ms``).
DEFAULT_WAIT_TIMEOUT_MS = 100


class ReplicasBehind(RedisError):
    """Fewer replicas than ``wait_replicas`` acknowledged an accepted nonce in time."""


@dataclass(frozen=True)
class RedisTarget:
    """A parsed nonce-store URL."""

    kind: str  #: "server", "sentinel" or "cluster"
    url: str  #: the URL without this module's options (what redis-py is given for "server")
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    wait_replicas: int = 0
    wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS


def _nodes(netloc_hosts: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in netloc_hosts.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):  # [v6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        try:
            nodes.append((host, int(port) if port else default_port))
        except ValueError:
            raise ValueError(f"not a port: {port!r}") from None
    if not nodes:
        raise ValueError("the URL names no host")
    return tuple(nodes)


def _int_option(options: dict[str, str], name: str, default: int) -> int:
    text = options.pop(name, None)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


def parse_target(url: str) -> RedisTarget:
    """The topology and options ``url`` names; ``ValueError`` for anything else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise ValueError(f"expected one of {', '.join(s + '://' for s in SCHEMES)}")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    wait_replicas = _int_option(options, "wait_replicas", 0)
    wait_timeout_ms = _int_option(options, "wait_timeout_ms", DEFAULT_WAIT_TIMEOUT_MS)
    if wait_replicas and not wait_timeout_ms:
        raise ValueError("wait_timeout_ms must be positive (0 would wait for ever)")
    if parts.scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        plain = parts._replace(query=urlencode(options)).geturl()
        return RedisTarget("server", plain, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms)
    if options:
        raise ValueError(f"unknown option(s) {', '.join(sorted(options))} (known: wait_replicas, wait_timeout_ms)")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    credentials: dict[str, Any] = {"username": unquote(username) or None, "password": unquote(password) or None}
    if parts.scheme == CLUSTER_SCHEME:
        if parts.path.strip("/"):
            raise ValueError("a Redis Cluster has one database: the URL takes no path")
        return RedisTarget(
            "cluster",
            url,
            _nodes(hosts, REDIS_PORT),
            wait_replicas=wait_replicas,
            wait_timeout_ms=wait_timeout_ms,
            **credentials,
        )
    service, _, db = parts.path.strip("/").partition("/")
    if not service:
        raise ValueError("a Sentinel URL names the service: redis+sentinel://host:26379,.../SERVICE[/db]")
    try:
        database = int(db or 0)
    except ValueError:
        raise ValueError(f"not a database number: {db!r}") from None
    return RedisTarget(
        "sentinel",
        url,
        _nodes(hosts, SENTINEL_PORT),
        service=service,
        db=database,
        wait_replicas=wait_replicas,
        wait_timeout_ms=wait_timeout_ms,
        **credentials,
    )


def make_client(target: RedisTarget, options: dict[str, Any]) -> Any:
    """An asyncio client of ``target`` with connection ``options`` (timeouts, retry)."""
    if target.kind == "server":
        from redis.asyncio import Redis

        return Redis.from_url(target.url, **options)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
        sentinel = Sentinel(list(target.nodes), sentinel_kwargs=dict(timeouts), **timeouts)
        return sentinel.master_for(target.service, db=target.db, **auth, **options)
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    cluster_options: dict[str, Any] = {k: v for k, v in options.items() if k != "retry"}
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes], **auth, **cluster_options
    )


async def close_client(client: Any) -> None:
    """Close ``client`` and, for Sentinel, its connections to the sentinels."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


def window_key(target: RedisTarget, prefix: str, key: str) -> str:
    """The Redis key of one caller key's window; in a Cluster its hash tag is the caller key.

    Every key a check touches then hashes to one slot, whatever else the prefix holds.
    """
    return f"{prefix}{{{key}}}" if target.kind == "cluster" else prefix + key


async def run_script(target: RedisTarget, client: Any, sha: str, script: str, key: str, args: tuple[str, ...]) -> int:
    """Run the check-and-store script on ``key``; with ``wait_replicas``, also ``WAIT`` for them.

    Returns the script's code; raises :class:`ReplicasBehind` when it accepted (0) but
    fewer replicas than asked acknowledged the write in time.
    """
    if not target.wait_replicas:
        try:
            return int(await client.evalsha(sha, 1, key, *args))
        except NoScriptError:  # a restarted or flushed server lost its script cache
            return int(await client.eval(script, 1, key, *args))
    wait = (target.wait_replicas, target.wait_timeout_ms)
    code, acks = await _script_and_wait(target, client, ("EVALSHA", sha, 1, key, *args), wait)
    if isinstance(code, NoScriptError):
        code, acks = await _script_and_wait(target, client, ("EVAL", script, 1, key, *args), wait)
    if isinstance(code, BaseException):
        raise code
    if int(code) == 0 and (isinstance(acks, BaseException) or int(acks) < target.wait_replicas):
        raise ReplicasBehind(f"{acks} of {target.wait_replicas} replicas acknowledged in {target.wait_timeout_ms} ms")
    return int(code)


def _refresh_slots(client: Any, node: Any) -> None:
    """Ask the cluster client to map the slots anew before its next command (``node`` failed).

    The client's own request (merged, run once due, by the next command) where it has one;
    else a refresh in the background, so a check's time bound cannot cut it half done.
    """
    request = getattr(client, "_request_refresh", None)
    if request is not None:
        request(last_failed_node_name=node.name)
    else:
        _in_background(client, client.nodes_manager.initialize)


_REFRESHES: dict[int, asyncio.Future[Any]] = {}


def _in_background(client: Any, refresh: Any) -> None:
    """Run ``refresh()`` as a task of its own (one at a time per client): no check waits for it,
    and no check's time bound cuts it half done. A failed refresh is asked for again by the next error."""
    running = _REFRESHES.get(id(client))
    if running is not None and not running.done():
        return
    task = asyncio.ensure_future(refresh())
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    _REFRESHES[id(client)] = task


async def _script_and_wait(
    target: RedisTarget, client: Any, command: tuple[Any, ...], wait: tuple[int, int]
) -> tuple[Any, Any]:
    """The script's reply and WAIT's, sent on one connection (WAIT counts that connection's writes)."""
    if target.kind == "cluster":
        from redis.asyncio.cluster import PipelineCommand

        if not client.nodes_manager.slots_cache:
            await client.initialize()
        due = getattr(client, "_initialize_due", None)
        if due is not None and due():
            _in_background(client, client.initialize)  # meanwhile the other slots' callers keep the map
        node = client.get_node_from_key(command[3])
        commands = [PipelineCommand(0, *command), PipelineCommand(1, "WAIT", *wait)]
        try:
            await node.execute_pipeline(commands)
        except (RedisError, OSError):
            _refresh_slots(client, node)  # the node is gone: learn who serves its slots now
            raise
        error = commands[0].result
        if isinstance(error, BaseException) and not isinstance(error, NoScriptError):
            _refresh_slots(client, node)  # a moved slot or a lost node
        return commands[0].result, commands[1].result
    pipe = client.pipeline(transaction=False)
    pipe.execute_command(*command)
    pipe.execute_command("WAIT", *wait)
    code, acks = await pipe.execute(raise_on_error=False)
    return code, acks
