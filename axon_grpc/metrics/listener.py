"""What an axon runs for its metrics besides counting: a listener of its own
(``--metrics-port``) and, with several workers, the refresh of the queue gauges in the
shared multiprocess files."""

from __future__ import annotations

import asyncio
from typing import Any

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
