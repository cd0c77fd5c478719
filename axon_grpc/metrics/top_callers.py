"""The optional per-hotkey view of the metrics: the top N callers, in bounded memory."""

from __future__ import annotations

from typing import Any, Iterable

from prometheus_client.core import CounterMetricFamily


class TopCallers:
    """The ``size`` callers with the most requests, counted in bounded memory.

    The Space-Saving algorithm (Metwally et al., 2005): ``capacity`` counters; a newcomer
    when all are taken replaces the smallest and inherits its count, so a heavy caller is
    never missed and a reported count overestimates by at most the smallest one.
    """

    def __init__(self, size: int, capacity: int | None = None) -> None:
        if size < 1:
            raise ValueError("the top-N view needs N >= 1")
        self.size = size
        self.capacity = max(capacity or 4 * size, size)
        self.counts: dict[str, int] = {}

    def add(self, hotkey: str) -> None:
        counts = self.counts
        count = counts.get(hotkey)
        if count is not None:
            counts[hotkey] = count + 1
        elif len(counts) < self.capacity:
            counts[hotkey] = 1
        else:
            smallest = min(counts, key=counts.__getitem__)
            counts[hotkey] = counts.pop(smallest) + 1

    def top(self) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda item: -item[1])[: self.size]


class TopCallersCollector:
    """Exposes :class:`TopCallers` at scrape time (a custom collector: one process only)."""

    def __init__(self, callers: TopCallers) -> None:
        self.callers = callers

    def collect(self) -> Iterable[Any]:
        family = CounterMetricFamily(
            "axon_caller_requests", "Requests by caller hotkey, top N callers only (approximate)", labels=["hotkey"]
        )
        for hotkey, count in self.callers.top():
            family.add_metric([hotkey], count)
        yield family
