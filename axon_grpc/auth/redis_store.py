"""A nonce store shared by every axon process: Redis, one atomic round trip per check.

The whole check-and-store of the nonce rules (:mod:`axon_grpc.auth.nonces`: the sliding
replay window per key, the freshness rule) runs server-side in one Lua script
(``EVALSHA``; on ``NOSCRIPT`` the script is sent once with ``EVAL``, which caches it
again). Nonces (``time.time_ns()``, ~1.8e18) exceed what a Lua double holds
exactly, so the script compares them as decimal strings: by sign, then length, then
lexicographically; the span test ``newest - nonce > span`` is asked as ``newest >
nonce + span`` with ``nonce + span`` computed here. Keys are
``axon-grpc:{axon_hotkey}:n:{key}``; each holds its window (at most ``replay_window + 1``
nonces, comma-separated) and expires ``retention_ns`` after its last acceptance, so
Redis memory stays bounded. Run Redis with ``maxmemory-policy noeviction``: a Redis
that evicts keys under memory pressure forgets nonces, while one that refuses writes
makes this store fail closed.

The store fails closed: when Redis is unreachable, answers an error, or takes longer
than ``timeout_s``, :meth:`RedisNonceStore.check_and_store` raises
:class:`~axon_grpc.errors.ServiceUnavailable` (503 / UNAVAILABLE), so a request is
never accepted without the store having said yes. The client reconnects by itself
once Redis is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import weakref
from typing import Any
from urllib.parse import urlsplit

try:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as e:  # an optional dependency: only a redis:// nonce store needs it
    raise ImportError(f"the Redis nonce store needs the redis client: pip install 'axon-grpc[redis]' ({e})") from e

from axon_grpc._aio import within
from axon_grpc.auth.nonces import (
    DEFAULT_REPLAY_SPAN_NS,
    DEFAULT_REPLAY_WINDOW,
    MEMORY_STORE_NAMES,
    NonceStore,
    NonceVerdict,
    check_window_settings,
)
from axon_grpc.auth.redis_ha import SCHEMES, close_client, make_client, parse_target, run_script, window_key
from axon_grpc.errors import ServiceUnavailable

logger = logging.getLogger("axon_grpc")

#: How long one check may take before the request is refused (seconds).
DEFAULT_TIMEOUT_S = 0.5

#: Prefix of every key this project writes.
KEY_PREFIX = "axon-grpc"

#: URL schemes of a nonce store on Redis (one server, Sentinel, Cluster: :mod:`axon_grpc.auth.redis_ha`).
URL_SCHEMES = SCHEMES

#: KEYS[1] = namespaced key, holding the key's window: accepted nonces, ascending, comma-separated.
#: ARGV = nonce, oldest allowed ('' = no freshness rule), TTL in ms, nonce + span, nonce - span,
#: window capacity (replay_window + 1). Returns 0 accepted (stored), 1 stale, 2 not newer
#: (a replay, or below the window). Numbers are canonical decimal strings, compared exactly.
CHECK_AND_STORE_LUA = """
local function cmp(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then
    if na then return -1 else return 1 end
  end
  if na then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then
    if #a < #b then return -1 else return 1 end
  end
  if a == b then return 0 end
  if a < b then return -1 else return 1 end
end
local nonce, oldest = ARGV[1], ARGV[2]
local capacity = tonumber(ARGV[6])
local stored = redis.call('GET', KEYS[1])
if not stored then
  if oldest ~= '' and cmp(nonce, oldest) <= 0 then return 1 end
  redis.call('SET', KEYS[1], nonce, 'PX', ARGV[3])
  return 0
end
local seen = {}
for n in string.gmatch(stored, '[^,]+') do seen[#seen + 1] = n end
local newest = seen[#seen]
local kept = {}
if cmp(nonce, newest) > 0 then
  for i = 1, #seen do
    if cmp(seen[i], ARGV[5]) >= 0 then kept[#kept + 1] = seen[i] end
  end
  kept[#kept + 1] = nonce
else
  if cmp(newest, ARGV[4]) > 0 then return 2 end
  if #seen >= capacity and cmp(nonce, seen[1]) <= 0 then return 2 end
  local pos = #seen
  for i = 1, #seen do
    local c = cmp(nonce, seen[i])
    if c == 0 then return 2 end
    if c < 0 then pos = i break end
  end
  if oldest ~= '' and cmp(nonce, oldest) <= 0 then return 1 end
  for i = 1, #seen do
    if i == pos then kept[#kept + 1] = nonce end
    kept[#kept + 1] = seen[i]
  end
end
local first = 1
if #kept > capacity then first = #kept - capacity + 1 end
redis.call('SET', KEYS[1], table.concat(kept, ',', first), 'PX', ARGV[3])
return 0
"""

_SCRIPT_SHA = hashlib.sha1(CHECK_AND_STORE_LUA.encode()).hexdigest()
_VERDICTS = {0: NonceVerdict.ACCEPTED, 1: NonceVerdict.STALE, 2: NonceVerdict.NOT_NEWER}


def is_redis_url(value: str) -> bool:
    """Whether ``value`` names a Redis store (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
    ``redis+cluster://``)."""
    return urlsplit(value).scheme in URL_SCHEMES


def redacted(url: str) -> str:
    """``url`` without its password, for logs and messages."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hosts}").geturl()


class RedisNonceStore:
    """The :class:`~axon_grpc.auth.nonces.NonceStore` several processes or hosts share.

    ``namespace`` is the axon's hotkey (axons of different hotkeys may share one
    Redis); ``retention_ns`` must be at least the widest freshness window of the
    schemes using the store. ``replay_window`` and ``replay_span_ns`` bound each key's
    window as in :class:`~axon_grpc.auth.nonces.InMemoryNonceStore` (``replay_window=0`` is
    the legacy strictly-greater rule); every process sharing a namespace must use the
    same values. The client is created lazily on the running event loop
    (one per loop), so the store can be built before the axon's loop exists.
    """

    #: Replay state is visible to every process using the same Redis and namespace.
    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        retention_ns: int,
        namespace: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        replay_window: int = DEFAULT_REPLAY_WINDOW,
        replay_span_ns: int = DEFAULT_REPLAY_SPAN_NS,
        **client_options: Any,
    ) -> None:
        if retention_ns <= 0:
            raise ValueError("retention_ns must be positive")
        check_window_settings(replay_window, replay_span_ns)
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if not is_redis_url(url):
            raise ValueError(f"not a Redis URL: {redacted(url)!r} (expected redis://host:port/db)")
        self.target = parse_target(url)
        self.url = url
        self.retention_ns = retention_ns
        self.replay_window = replay_window
        self.replay_span_ns = replay_span_ns
        self.timeout_s = timeout_s
        self.namespace = namespace
        self.key_prefix = f"{KEY_PREFIX}:{namespace}:n:"
        self.ttl_ms = max(1, math.ceil(retention_ns / 1_000_000))
        self.client_options = client_options
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._healthy = True

    def redis_key(self, key: str) -> str:
        """The Redis key holding the replay window of ``key``."""
        return window_key(self.target, self.key_prefix, key)

    def client(self) -> Any:
        """The client of the running loop (created on first use)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            options: dict[str, Any] = {
                "socket_timeout": self.timeout_s,
                "socket_connect_timeout": self.timeout_s,
                # One immediate retry: a pooled connection a restarted server dropped is
                # reconnected. Safe: if the first attempt ran, the retry answers NOT_NEWER.
                "retry": Retry(NoBackoff(), 1),
                **self.client_options,
            }
            client = make_client(self.target, options)
            self._clients[loop] = client
        return client

    async def check_and_store(self, key: str, nonce: int, oldest_allowed: int | None) -> NonceVerdict:
        """Apply the nonce rules in Redis, atomically, in one round trip.

        Raises :class:`~axon_grpc.errors.ServiceUnavailable` when Redis cannot answer
        within ``timeout_s``: the request is refused, never accepted unchecked.
        """
        nonce = int(nonce)
        span = self.replay_span_ns
        args = (
            str(nonce),
            "" if oldest_allowed is None else str(int(oldest_allowed)),
            str(self.ttl_ms),
            str(nonce + span),
            str(nonce - span),
            str(self.replay_window + 1),
        )
        try:
            code = await within(self._run(self.client(), self.redis_key(key), args), self.timeout_s)
            verdict = _VERDICTS[int(code)]
        except (RedisError, OSError, asyncio.TimeoutError, TimeoutError, KeyError, ValueError) as e:
            self._mark(False, e)
            raise ServiceUnavailable("nonce store unavailable") from None
        self._mark(True)
        return verdict

    async def _run(self, client: Any, key: str, args: tuple[str, ...]) -> int:
        return await run_script(self.target, client, _SCRIPT_SHA, CHECK_AND_STORE_LUA, key, args)

    def _mark(self, healthy: bool, error: BaseException | None = None) -> None:
        """Log state changes only, so an outage does not flood the log."""
        if healthy == self._healthy:
            return
        self._healthy = healthy
        if healthy:
            logger.warning("nonce store %s answers again", redacted(self.url))
        else:
            reason = f"{type(error).__name__}: {error}" if error is not None else "unknown"
            logger.error("nonce store %s unavailable, refusing requests (%s)", redacted(self.url), reason)

    async def close(self) -> None:
        """Close the clients (each on its own loop when that loop still runs)."""
        clients = list(self._clients.items())
        self._clients = weakref.WeakKeyDictionary()
        current = asyncio.get_running_loop()
        for loop, client in clients:
            if loop is current:
                await close_client(client)
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(close_client(client), loop)
                await asyncio.wait_for(asyncio.wrap_future(future), 5.0)

    def __repr__(self) -> str:
        return f"RedisNonceStore({redacted(self.url)!r}, namespace={self.namespace!r})"


__all__ = ["CHECK_AND_STORE_LUA", "DEFAULT_TIMEOUT_S", "RedisNonceStore", "is_redis_url", "redacted"]


def open_nonce_store(
    spec: str,
    *,
    retention_ns: int,
    namespace: str = "",
    timeout_s: float | None = None,
    replay_window: int = DEFAULT_REPLAY_WINDOW,
    replay_span_ns: int = DEFAULT_REPLAY_SPAN_NS,
) -> NonceStore | None:
    """The store a ``--axon.nonce_store`` value names: None for ``memory``, else a Redis store.

    ``redis://host:port/db`` (also ``rediss://``, ``unix://``) gives a
    :class:`RedisNonceStore` namespaced by ``namespace``;
    anything else raises ``ValueError``.
    """
    if spec.strip().lower() in MEMORY_STORE_NAMES:
        return None
    return RedisNonceStore(
        spec.strip(),
        retention_ns=retention_ns,
        namespace=namespace,
        timeout_s=timeout_s or DEFAULT_TIMEOUT_S,
        replay_window=replay_window,
        replay_span_ns=replay_span_ns,
    )
