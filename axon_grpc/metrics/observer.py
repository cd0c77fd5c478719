"""What an axon did, for Prometheus: an observer the pipeline calls at a few points.

The pipeline, the forwarder and the verifier hold an :class:`Observer` and call it
once per answered call (:meth:`~Observer.finished`), once per admitted forward (queue
wait, forward time), per stream event and per nonce-store check. :class:`NullObserver`
does nothing (``Axon(metrics=False)``); :class:`PrometheusMetrics` counts with
``prometheus_client``. Its label children are bound when a synapse is attached, so a
call costs a few additions to plain tallies (:mod:`~axon_grpc.metrics.tallies`, added to the
children when scraped), never a ``labels()`` lookup or a lock. Gauges that
read the axon's state (queue depth, workers busy, shed and expired counts, the nonce
store's health) are refreshed when scraped, not per call.

Metrics (``axon_`` prefix, seconds, ``_total`` counters; labels: ``synapse``,
``transport`` (grpc, http), ``scheme`` (legacy, btauth, none), ``status_class``,
``reason`` (:class:`~axon_grpc.errors.Reason`)); the caller's hotkey is a label only in
the optional top-N view (``hotkeys=N``)::

    axon_requests_total{synapse,transport,scheme,status_class}
    axon_refusals_total{synapse,transport,reason}
    axon_request_duration_seconds{synapse,transport}      whole call (histogram)
    axon_queue_wait_seconds{synapse}                       admission wait (histogram)
    axon_forward_duration_seconds{synapse}                 the forward alone (histogram)
    axon_admission_queue_depth, axon_workers_busy, axon_workers   gauges
    axon_admission_shed_total, axon_admission_expired_total
    axon_nonce_checks_total{store,verdict}, axon_nonce_check_duration_seconds{store},
    axon_nonce_store_healthy{store}
    axon_streams_open{synapse}, axon_stream_chunks_total{synapse},
    axon_streams_cancelled_total{synapse}
    axon_caller_requests_total{hotkey}                     top N callers (optional)
    axon_build_info{version,mode,python}

With several worker processes, ``prometheus_client``'s multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by :mod:`axon_grpc.server.workers`) makes one scrape of any
worker show them all; see :func:`exposition`.
"""

from __future__ import annotations

import os
import platform
import threading
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import REGISTRY

from axon_grpc.errors import Status
from axon_grpc.metrics.tallies import Count, EagerCount, EagerHisto, Flush, Histo
from axon_grpc.metrics.top_callers import TopCallers, TopCallersCollector

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.auth.nonces import NonceVerdict
    from axon_grpc.server.admission import AdmissionQueue

#: The content type of :func:`exposition`'s bytes (Prometheus text format 0.0.4).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

#: Environment variable naming the multiprocess directory (prometheus_client's own).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Histogram buckets in seconds: an axon call takes from a fraction of a millisecond to its timeout.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 12.0, 30.0, 60.0)

#: The ``synapse`` label of calls naming no attached synapse (the name is the caller's, never a label).
UNKNOWN_SYNAPSE = "_unknown"
#: The ``scheme`` label of calls refused before their credentials were read.
NO_SCHEME = "none"
#: HTTP-style status of a call whose client left before the answer was complete (nginx's 499).
CLIENT_CLOSED = int(Status.CLIENT_CLOSED)

#: The ``transport`` labels, one per wire format (a :class:`~axon_grpc.server.call.Codec`'s).
GRPC = "grpc"  #: protobuf message bytes (grpc.aio, the Envoy edge)
HTTP = "http"  #: the legacy JSON body (the HTTP bridge)

_TRANSPORTS = (GRPC, HTTP)
_SCHEMES = ("legacy", "btauth", "session")


def multiprocess() -> bool:
    """Whether ``prometheus_client`` writes values to the shared multiprocess directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Observer(Protocol):
    """What the pipeline reports; every method is called on the axon's event loop."""

    def attached(self, name: str) -> None:
        """A synapse of ``name`` is attached: bind its label children now."""

    def finished(
        self,
        name: str,
        transport: str,
        scheme: str,
        status: int,
        reason: str | None,
        seconds: float,
        hotkey: str | None,
    ) -> None:
        """One call answered (a stream: once it ended); ``hotkey`` only once the signature verified."""

    def queued(self, name: str, seconds: float) -> None:
        """A forward got its admission slot after waiting ``seconds``."""

    def forwarded(self, name: str, seconds: float) -> None:
        """A forward (not a stream) returned or failed after ``seconds``."""

    def stream_opened(self, name: str) -> None:
        """A streaming forward sent its first chunk."""

    def stream_chunk(self, name: str) -> None:
        """A stream sent one more chunk."""

    def stream_closed(self, name: str, cancelled: bool) -> None:
        """A stream ended; ``cancelled`` when the client went away first."""

    def nonce_checked(self, store: str, verdict: NonceVerdict | None, seconds: float) -> None:
        """A nonce store answered ``verdict`` (None: it failed) in ``seconds``."""


class NullObserver:
    """Observes nothing: the pipeline's default, and ``Axon(metrics=False)``."""

    enabled = False

    def attached(self, name: str) -> None:
        pass

    def finished(
        self,
        name: str,
        transport: str,
        scheme: str,
        status: int,
        reason: str | None,
        seconds: float,
        hotkey: str | None,
    ) -> None:
        pass

    def queued(self, name: str, seconds: float) -> None:
        pass

    def forwarded(self, name: str, seconds: float) -> None:
        pass

    def stream_opened(self, name: str) -> None:
        pass

    def stream_chunk(self, name: str) -> None:
        pass

    def stream_closed(self, name: str, cancelled: bool) -> None:
        pass

    def nonce_checked(self, store: str, verdict: NonceVerdict | None, seconds: float) -> None:
        pass


NULL_OBSERVER = NullObserver()


class _Bound:
    """One synapse's label children, bound at attach time, with their per-call tallies."""

    __slots__ = (
        "_metrics",
        "cancelled",
        "chunks",
        "duration",
        "forward",
        "name",
        "queue_wait",
        "refusals",
        "requests",
        "streams_open",
    )

    def __init__(self, metrics: PrometheusMetrics, name: str) -> None:
        self._metrics = metrics
        self.name = name
        count, histo = metrics.tallies
        self.requests: dict[tuple[str, str, int], Count] = {
            (t, s, 200): count(metrics.requests.labels(name, t, s, "2xx")) for t in _TRANSPORTS for s in _SCHEMES
        }
        self.refusals: dict[tuple[str, str], Count] = {}
        self.duration = {t: histo(metrics.request_duration.labels(name, t)) for t in _TRANSPORTS}
        self.queue_wait = histo(metrics.queue_wait.labels(name))
        self.forward = histo(metrics.forward_duration.labels(name))
        self.streams_open = metrics.streams_open.labels(name)
        self.chunks = metrics.stream_chunks.labels(name)
        self.cancelled = metrics.streams_cancelled.labels(name)

    def request(self, transport: str, scheme: str, status: int) -> Count:
        key = (transport, scheme, status)
        tally = self.requests.get(key)
        if tally is None:
            child = self._metrics.requests.labels(self.name, transport, scheme, f"{status // 100}xx")
            tally = self.requests[key] = self._metrics.tallies[0](child)
        return tally

    def refusal(self, transport: str, reason: str) -> Count:
        key = (transport, reason)
        tally = self.refusals.get(key)
        if tally is None:
            child = self._metrics.refusals.labels(self.name, transport, reason)
            tally = self.refusals[key] = self._metrics.tallies[0](child)
        return tally

    def tallies(self) -> list[Count | Histo]:
        return [
            *list(self.requests.values()),
            *list(self.refusals.values()),
            *list(self.duration.values()),
            self.queue_wait,
            self.forward,
        ]


class _NonceBound:
    """One nonce store's label children (and tallies) and its last known health."""

    __slots__ = ("duration", "gauge", "healthy", "verdicts")

    def __init__(self, metrics: PrometheusMetrics, store: str) -> None:
        self.verdicts: dict[str, Count] = {}
        self.duration = metrics.tallies[1](metrics.nonce_duration.labels(store))
        self.gauge = metrics.nonce_healthy.labels(store)
        self.healthy: bool | None = None


class PrometheusMetrics:
    """The axon's metrics in ``registry`` (a new one per axon unless given).

    ``hotkeys``: also keep the top N callers by requests (None: no per-hotkey view).
    ``admission``: the queue whose depth, busy slots, shed and expired counts are shown.
    """

    enabled = True

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        hotkeys: int | None = None,
        admission: AdmissionQueue | None = None,
        mode: str | None = None,
        version: str = "",
    ) -> None:
        # Long by design: one declaration per metric, read top to bottom like the list above.
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.admission = admission
        #: How calls are tallied: in plain ints added to the children at scrape time, or, with
        #: several workers sharing multiprocess files, written through at once.
        self.tallies: tuple[type[Count], type[Histo]] = (EagerCount, EagerHisto) if multiprocess() else (Count, Histo)
        self._bound: dict[str, _Bound] = {}
        self._nonce: dict[str, _NonceBound] = {}
        self._flushing = threading.Lock()  # scrapes may come from several threads at once
        r = self.registry
        r.register(Flush(self.flush))  # type: ignore[arg-type]
        self.requests = Counter(
            "axon_requests",
            "Calls answered, by synapse, transport, auth scheme and status class",
            ["synapse", "transport", "scheme", "status_class"],
            registry=r,
        )
        self.refusals = Counter(
            "axon_refusals", "Calls not answered 200, by reason", ["synapse", "transport", "reason"], registry=r
        )
        self.request_duration = Histogram(
            "axon_request_duration_seconds",
            "Whole call, first byte to answer",
            ["synapse", "transport"],
            buckets=BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "axon_queue_wait_seconds", "Wait for an admission slot", ["synapse"], buckets=BUCKETS, registry=r
        )
        self.forward_duration = Histogram(
            "axon_forward_duration_seconds",
            "The forward alone, once admitted",
            ["synapse"],
            buckets=BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "axon_admission_queue_depth", "Requests waiting for a worker slot", registry=r, multiprocess_mode="livesum"
        )
        self.workers_busy = Gauge(
            "axon_workers_busy", "Worker slots running a forward", registry=r, multiprocess_mode="livesum"
        )
        self.workers = Gauge("axon_workers", "Worker slots (max_workers)", registry=r, multiprocess_mode="livesum")
        self.shed = Counter("axon_admission_shed", "Requests refused 503 because the queue was full", registry=r)
        self.expired = Counter("axon_admission_expired", "Requests whose deadline passed while queued", registry=r)
        self.nonce_checks = Counter(
            "axon_nonce_checks",
            "Nonce store checks, by verdict (error: the store failed)",
            ["store", "verdict"],
            registry=r,
        )
        self.nonce_duration = Histogram(
            "axon_nonce_check_duration_seconds", "Nonce store check latency", ["store"], buckets=BUCKETS, registry=r
        )
        self.nonce_healthy = Gauge(
            "axon_nonce_store_healthy",
            "1 while the nonce store answers, 0 after it failed",
            ["store"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.streams_open = Gauge(
            "axon_streams_open", "Streams sending chunks now", ["synapse"], registry=r, multiprocess_mode="livesum"
        )
        self.stream_chunks = Counter("axon_stream_chunks", "Stream chunks sent", ["synapse"], registry=r)
        self.streams_cancelled = Counter(
            "axon_streams_cancelled", "Streams the client left before their end", ["synapse"], registry=r
        )
        self.build_info = Gauge(
            "axon_build_info",
            "Always 1: the axon-grpc version and server mode",
            ["version", "mode", "python"],
            registry=r,
            multiprocess_mode="max",
        )
        self._version = version or _version()
        self.mode = ""
        # In a worker of a group the mode is known from the start: a value once written to the
        # shared multiprocess files stays there, so build_info must not be relabelled later.
        self.set_mode(mode or ("workers" if multiprocess() else "inprocess"))
        self.top_callers = TopCallers(hotkeys) if hotkeys else None
        if self.top_callers is not None and not multiprocess():
            r.register(TopCallersCollector(self.top_callers))  # type: ignore[arg-type]
        self._admission_seen = (0, 0)

    def set_mode(self, mode: str) -> None:
        """Name the server mode in ``axon_build_info`` (inprocess, workers, envoy)."""
        if mode == self.mode:
            return
        if self.mode:
            self.build_info.remove(self._version, self.mode, platform.python_version())
        self.mode = mode
        self.build_info.labels(self._version, mode, platform.python_version()).set(1)

    # -- Observer ------------------------------------------------------------------------------
    def attached(self, name: str) -> None:
        if name not in self._bound:
            self._bound[name] = _Bound(self, name)

    def _for(self, name: str) -> _Bound:
        bound = self._bound.get(name)
        if bound is None:
            bound = self._bound[name] = _Bound(self, name)
        return bound

    def finished(
        self,
        name: str,
        transport: str,
        scheme: str,
        status: int,
        reason: str | None,
        seconds: float,
        hotkey: str | None,
    ) -> None:
        bound = self._bound.get(name) or self._for(name)
        bound.request(transport, scheme, status).inc()
        bound.duration[transport].observe(seconds)
        if reason is not None:
            bound.refusal(transport, reason).inc()
        if hotkey is not None and self.top_callers is not None:
            self.top_callers.add(hotkey)

    def queued(self, name: str, seconds: float) -> None:
        self._bound[name].queue_wait.observe(seconds)

    def forwarded(self, name: str, seconds: float) -> None:
        self._bound[name].forward.observe(seconds)

    def stream_opened(self, name: str) -> None:
        self._bound[name].streams_open.inc()

    def stream_chunk(self, name: str) -> None:
        self._bound[name].chunks.inc()

    def stream_closed(self, name: str, cancelled: bool) -> None:
        bound = self._bound[name]
        bound.streams_open.dec()
        if cancelled:
            bound.cancelled.inc()

    def nonce_checked(self, store: str, verdict: NonceVerdict | None, seconds: float) -> None:
        bound = self._nonce.get(store)
        if bound is None:
            bound = self._nonce[store] = _NonceBound(self, store)
        name = "error" if verdict is None else verdict.value
        tally = bound.verdicts.get(name)
        if tally is None:
            tally = bound.verdicts[name] = self.tallies[0](self.nonce_checks.labels(store, name))
        tally.inc()
        bound.duration.observe(seconds)
        healthy = verdict is not None
        if healthy is not bound.healthy:  # the gauge is written on changes only
            bound.healthy = healthy
            bound.gauge.set(1 if healthy else 0)

    # -- read at scrape time ---------------------------------------------------------------------
    def flush(self) -> None:
        """Add what calls tallied since the last scrape to the prometheus_client children."""
        with self._flushing:
            for bound in list(self._bound.values()):
                for tally in bound.tallies():
                    tally.fold()
            for nonce in list(self._nonce.values()):
                for verdict in list(nonce.verdicts.values()):
                    verdict.fold()
                nonce.duration.fold()

    def refresh(self) -> None:
        """Add the calls' tallies; set the gauges and counters that read the admission queue."""
        self.flush()
        admission = self.admission
        if admission is None:
            return
        self.queue_depth.set(admission.waiting)
        self.workers_busy.set(admission.running)
        self.workers.set(admission.slots)
        stats = admission.stats
        shed, expired = self._admission_seen
        if stats.shed > shed:
            self.shed.inc(stats.shed - shed)
        if stats.expired > expired:
            self.expired.inc(stats.expired - expired)
        self._admission_seen = (stats.shed, stats.expired)

    def collect(self) -> Iterable[Any]:
        """What a scrape shows (a prometheus_client collector): see :func:`exposition`."""
        self.refresh()
        if multiprocess():
            from prometheus_client.multiprocess import MultiProcessCollector

            yield from MultiProcessCollector(None).collect()  # type: ignore[arg-type]
            return
        yield from self.registry.collect()
        yield from REGISTRY.collect()

    def exposition(self) -> tuple[bytes, str]:
        """The scrape: ``(body, content_type)`` in Prometheus text format, for any transport to serve."""
        return exposition(self)

    def serve(self, port: int, host: str = "0.0.0.0") -> tuple[Any, Any]:
        """Answer scrapes on ``host:port`` from a daemon thread (prometheus_client's server).

        Returns ``(server, thread)``; ``server.shutdown()`` stops it.
        """
        from prometheus_client.exposition import start_http_server

        return start_http_server(port, host.strip("[]") or "::", registry=self)  # type: ignore[arg-type]


def exposition(collector: Any) -> tuple[bytes, str]:
    """``(body, content_type)`` of a scrape of ``collector`` (a :class:`PrometheusMetrics`).

    One process: the axon's metrics, then prometheus_client's default registry (process
    and platform metrics, and whatever the application registered there). Multiprocess
    mode: every worker's values, aggregated from the shared directory (prometheus_client
    has no process metrics and no custom collectors in that mode).
    """
    return generate_latest(collector), CONTENT_TYPE


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("axon-grpc")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "unknown"
