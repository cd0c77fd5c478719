"""The benchmark suite: signed load against the project's transports and reference servers.

``axon-grpc bench`` (:mod:`axon_grpc.bench.cli`) starts each target server in its own
process (:mod:`~axon_grpc.bench.servers`; the legacy Bittensor SDK 10.5.0 axon from a
separate virtualenv, :mod:`~axon_grpc.bench.legacy_server`), drives it from load
generator processes (:mod:`~axon_grpc.bench.load`) whose every request is signed with
sr25519 and a fresh nonce, measures requests/s, latency percentiles, statuses and the
server's own CPU time per request (:mod:`~axon_grpc.bench.runner`), and writes the
figures as JSON and a latency-versus-load chart (:mod:`~axon_grpc.bench.report`,
:mod:`~axon_grpc.bench.chart`). ``--memory`` measures the nonce store's resident
memory growth instead (:mod:`~axon_grpc.bench.memory`).

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
    "library-edge",
    "grpc-1w-redis",
    "grpc-2w-redis",
    "http",
    "echo",
    "echo-verified",
    "legacy",
)
#: What ``axon-grpc bench`` (and ``make bench``) runs without ``--targets``: all but the
#: one-worker Redis run, which only splits the two-worker figure (the store's cost alone), and
#: library mode behind its Envoy, which only prices that hop against ``grpc-async``.
DEFAULT_TARGETS = tuple(name for name in TARGET_NAMES if name not in ("grpc-1w-redis", "library-edge"))
