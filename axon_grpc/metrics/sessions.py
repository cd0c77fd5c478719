"""The session metrics (``axon-session/1``, docs/SESSIONS.md), beside the axon's others::

    axon_session_opens_total{result}         accepted, or the refusal: rate, version, receiver,
                                             nonce, signature, limit, invalid
    axon_sessions_live                       sessions held (each worker's, summed)
    axon_session_evictions_total{cause}      sessions dropped before their end: hotkey_limit, expired

Session calls are counted by ``axon_requests_total{scheme="session"}``. Opens are rare (rate
limited), so these are written when an open is answered or a session is dropped, never per call.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.auth.session_table import SessionTable

#: One set per registry: axons sharing a PrometheusMetrics share these too.
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, SessionMetrics] = weakref.WeakKeyDictionary()

#: The ``result`` labels of an open.
RESULTS = ("accepted", "rate", "version", "receiver", "nonce", "signature", "limit", "invalid")


class SessionMetrics:
    """The session counters and gauge in ``registry`` (an axon's :class:`PrometheusMetrics` registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.opens = Counter("axon_session_opens", "Session opens, by result", ["result"], registry=registry)
        self.live_sessions = Gauge(
            "axon_sessions_live", "Sessions held", registry=registry, multiprocess_mode="livesum"
        )
        self.evictions = Counter(
            "axon_session_evictions", "Sessions dropped before their end", ["cause"], registry=registry
        )
        self._results = {result: self.opens.labels(result) for result in RESULTS}

    @classmethod
    def of(cls, registry: CollectorRegistry) -> SessionMetrics:
        """The session metrics in ``registry``, made on first use."""
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _BY_REGISTRY[registry] = cls(registry)
        return found

    def opened(self, result: str, table: SessionTable) -> None:
        """An open was answered (``accepted`` or why not)."""
        child = self._results.get(result) or self.opens.labels(result)
        child.inc()
        self.live(table)

    def live(self, table: SessionTable) -> None:
        """The table changed: the live sessions and the evictions since the last look."""
        self.live_sessions.set(len(table))
        reported = table.evictions_reported
        for cause, count in table.evicted.items():
            seen = reported.get(cause, 0)
            if count > seen:
                self.evictions.labels(cause).inc(count - seen)
                reported[cause] = count
