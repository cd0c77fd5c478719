"""Per-call tallies of the axon's metrics, added to the prometheus_client children at scrape time.

A call's counts and observations go to plain ints (and a float sum) on the event loop;
:meth:`~axon_grpc.metrics.observer.PrometheusMetrics.flush` adds what accumulated since
the last scrape to the children, so a scrape shows exactly what per-call increments would
have shown, and a call costs a few additions instead of locked increments and method
calls. The loop is each tally's only writer; a flush reads a value once and adds its
growth (what the loop adds meanwhile is added at the next scrape). With several worker
processes (prometheus_client's multiprocess files) the ``Eager`` variants write through
at once, since a scrape there reads the other workers' files, not their tallies.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterable


class Count:
    """A counter child's increments, kept as a plain int and added to the child when scraped
    (:meth:`PrometheusMetrics.flush`): a call costs one addition, not a locked increment."""

    __slots__ = ("child", "folded", "n")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = 0
        self.folded = 0

    def inc(self) -> None:
        self.n += 1

    def fold(self) -> None:
        n = self.n  # read once: the loop may add more meanwhile (counted at the next scrape)
        if n != self.folded:
            self.child.inc(n - self.folded)
            self.folded = n


class Histo:
    """A histogram child's observations, kept as plain bucket counts and a sum and added to
    the child when scraped: the same buckets as ``Histogram.observe`` (the first upper bound
    not below the value)."""

    __slots__ = ("bounds", "child", "counts", "folded", "folded_total", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds = child._upper_bounds
        self.counts = [0] * len(self.bounds)
        self.folded = [0] * len(self.bounds)
        self.total = 0.0
        self.folded_total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def fold(self) -> None:
        child, folded = self.child, self.folded
        for i, n in enumerate(list(self.counts)):
            if n != folded[i]:
                child._buckets[i].inc(n - folded[i])
                folded[i] = n
        total = self.total
        if total != self.folded_total:
            child._sum.inc(total - self.folded_total)
            self.folded_total = total


class EagerCount(Count):
    """Written through at once: with several workers a scrape reads every worker's shared
    files, so no worker may hold counts back."""

    __slots__ = ()

    def inc(self) -> None:
        self.child.inc()


class EagerHisto(Histo):
    __slots__ = ()

    def observe(self, seconds: float) -> None:
        self.child.observe(seconds)


class Flush:
    """Registered first in the axon's registry: whoever collects it sees the tallies added."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self.flush = flush

    def collect(self) -> Iterable[Any]:
        self.flush()
        return ()
