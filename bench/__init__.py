"""The benchmark suite: signed load against the project's transports and reference servers.

``python -m bench`` (:mod:`bench.cli`) starts each target server in its own
process (:mod:`~bench.servers`; the legacy Bittensor SDK 10.5.0 axon from a
separate virtualenv, :mod:`~bench.legacy_server`), drives it from load
generator processes (:mod:`~bench.load`) whose every request is signed with
sr25519 and a fresh nonce, measures requests/s, latency percentiles, statuses and the
server's own CPU time per request (:mod:`~bench.runner`), and writes the
figures as JSON and a latency-versus-load chart (:mod:`~bench.report`,
:mod:`~bench.chart`). ``--memory`` measures the nonce store's resident
memory growth instead (:mod:`~bench.memory`).

Nothing here is imported by the core; the chart needs the ``bench`` extra (matplotlib).
"""

from __future__ import annotations

#: Every target the suite knows, in report order.
TARGET_NAMES = (
    "grpc",
    "grpc-async",
    "grpc-async-nometrics",
    "grpc-inline",
    "envoy",
    "envoy-echo-verified",
    "envoy-http",
    "envoy-session",
    "grpc-async-session",
    "envoy-forged-signature",
    "envoy-forged-mac",
    "envoy-open",
    "envoy-open-flood",
    "library-edge",
    "grpc-1w-redis",
    "grpc-2w-redis",
    "http",
    "echo",
    "echo-verified",
    "legacy",
)
#: What ``python -m bench`` (and ``make bench``) runs without ``--targets``: all but the
#: one-worker Redis run, which only splits the two-worker figure (the store's cost alone), and
#: library mode behind its Envoy, which only prices that hop against ``grpc-async``.
DEFAULT_TARGETS = tuple(name for name in TARGET_NAMES if name not in ("grpc-1w-redis", "library-edge"))
