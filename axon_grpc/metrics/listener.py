"""What an axon runs for its metrics besides counting: a listener of its own
(``--metrics-port``) and, with several workers, the refresh of the queue gauges in the
shared multiprocess files."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from prometheus_client import CollectorRegistry

from axon_grpc.metrics.observer import PrometheusMetrics, multiprocess


async def _refresh_every(metrics: PrometheusMetrics, seconds: float) -> None:
    """Keep this worker's queue gauges current in the shared multiprocess files."""
    while True:
        metrics.refresh()
        await asyncio.sleep(seconds)


class MetricsListener:
    """Starts and stops the metrics port's listener and the multiprocess refresh."""

    def __init__(self) -> None:
        self._server: Any = None
        self._refresh: asyncio.Task[None] | None = None

    def start(self, metrics: PrometheusMetrics, port: int | None, host: str) -> int | None:
        """On the running loop; what already runs is left as it is. Returns the port bound
        (the system's pick for port 0), None without a metrics port."""
        if port is not None and self._server is None:
            self._server, _ = metrics.serve(port, host)
        if multiprocess() and self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(_refresh_every(metrics, 1.0))
        return None if self._server is None else int(self._server.server_port)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        task, self._refresh = self._refresh, None
        if task is not None:
            task.cancel()


def serve_aggregate(port: int, host: str = "::") -> tuple[Any, Any]:
    """Answer scrapes of every worker's metrics (multiprocess mode) on ``host:port`` from a
    daemon thread of this process: the parent of several workers serves the metrics port."""
    from prometheus_client.exposition import start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    merged = CollectorRegistry()
    MultiProcessCollector(merged)
    return start_http_server(port, host.strip("[]") or "::", registry=merged)


def asgi_app(scrape: Callable[[], tuple[bytes, str]]) -> Any:
    """A plain ASGI app answering ``GET /metrics`` with ``scrape()`` (404 elsewhere)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics" or scope["method"] not in ("GET", "HEAD"):
            status, body, content_type = 404, b"Not Found", "text/plain; charset=utf-8"
        else:
            status, (body, content_type) = 200, scrape()
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app
