"""Per-call tallies: a scrape shows exactly what per-call prometheus_client writes would show."""

from __future__ import annotations

import threading

from prometheus_client import generate_latest

from axon_grpc.auth.nonces import NonceVerdict
from axon_grpc.metrics.observer import BUCKETS, PrometheusMetrics
from axon_grpc.metrics.tallies import EagerCount, EagerHisto

#: Durations on, just above and just below each bucket bound, and past the last one.
DURATIONS = [0.0, *BUCKETS, *(b * 1.0001 for b in BUCKETS), *(b * 0.9999 for b in BUCKETS), 100.0, 1e-9]


def _calls(metrics: PrometheusMetrics) -> None:
    """Every kind of per-call report, with durations on and around the bucket bounds."""
    metrics.attached("Dummy")
    for i, seconds in enumerate(DURATIONS):
        status, reason = ((200, None), (401, "signature"), (503, "overload"), (404, None))[i % 4]
        metrics.finished(
            "Dummy", ("grpc", "http")[i % 2], ("legacy", "btauth")[i % 3 % 2], status, reason, seconds, None
        )
        metrics.queued("Dummy", seconds / 3)
        metrics.forwarded("Dummy", seconds * 2)
        metrics.nonce_checked("memory", (NonceVerdict.ACCEPTED, NonceVerdict.NOT_NEWER, None)[i % 3], seconds)
    metrics.finished("_unknown", "grpc", "none", 404, "unknown synapse", 0.001, None)


def _scrape(metrics: PrometheusMetrics) -> list[str]:
    """The scrape's lines but the ``_created`` timestamps (which differ between two registries)."""
    text = generate_latest(metrics).decode()  # type: ignore[arg-type]
    return [line for line in text.splitlines() if "_created" not in line and "python_" not in line]


def _axon_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("axon_") and "axon_build_info" not in line]


def test_a_scrape_shows_what_writing_every_call_through_shows() -> None:
    tallied, written = PrometheusMetrics(), PrometheusMetrics()
    written.tallies = (EagerCount, EagerHisto)  # every call written to the children at once
    _calls(tallied)
    _calls(written)
    assert _axon_lines(_scrape(tallied)) == _axon_lines(_scrape(written))
    assert 'axon_requests_total{scheme="legacy",status_class="4xx",synapse="Dummy",transport="http"}' in "\n".join(
        _scrape(tallied)
    )
    text = "\n".join(_scrape(tallied))
    for verdict in ("accepted", "not_newer", "error"):  # 51 checks, every third each
        assert f'axon_nonce_checks_total{{store="memory",verdict="{verdict}"}} 17.0' in text
    # a second round after a scrape is added once, not twice
    _calls(tallied)
    _calls(written)
    assert _axon_lines(_scrape(tallied)) == _axon_lines(_scrape(written))


def test_reading_the_registry_directly_sees_the_tallies() -> None:
    metrics = PrometheusMetrics()
    metrics.attached("Dummy")
    for _ in range(3):
        metrics.finished("Dummy", "grpc", "legacy", 200, None, 0.002, None)
    labels = {"synapse": "Dummy", "transport": "grpc", "scheme": "legacy", "status_class": "2xx"}
    assert metrics.registry.get_sample_value("axon_requests_total", labels) == 3.0
    bucket = {"synapse": "Dummy", "transport": "grpc", "le": "0.0025"}
    assert metrics.registry.get_sample_value("axon_request_duration_seconds_bucket", bucket) == 3.0
    assert metrics.registry.get_sample_value("axon_request_duration_seconds_bucket", {**bucket, "le": "0.001"}) == 0.0


def test_scrapes_from_several_threads_add_each_call_once() -> None:
    metrics = PrometheusMetrics()
    metrics.attached("Dummy")
    stop = threading.Event()

    def scrape_until_stopped() -> None:
        while not stop.is_set():
            metrics.flush()

    scrapers = [threading.Thread(target=scrape_until_stopped) for _ in range(3)]
    for thread in scrapers:
        thread.start()
    calls = 20_000
    try:
        for _ in range(calls):
            metrics.finished("Dummy", "grpc", "legacy", 200, None, 0.0002, None)
    finally:
        stop.set()
        for thread in scrapers:
            thread.join()
    labels = {"synapse": "Dummy", "transport": "grpc", "scheme": "legacy", "status_class": "2xx"}
    assert metrics.registry.get_sample_value("axon_requests_total", labels) == calls
    count = {"synapse": "Dummy", "transport": "grpc"}
    assert metrics.registry.get_sample_value("axon_request_duration_seconds_count", count) == calls
    total = metrics.registry.get_sample_value("axon_request_duration_seconds_sum", count)
    assert total is not None and abs(total - calls * 0.0002) < 1e-9
