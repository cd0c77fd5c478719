"""What an axon did, for Prometheus.

- :mod:`.observer`: the observer the pipeline calls (``PrometheusMetrics``) and the
  exposition; :mod:`.listener`: the metrics port of its own; :mod:`.top_callers`: the
  optional per-hotkey view.

``axon_grpc.metrics`` was the observer's module: its names are still found here.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from . import observer

    try:
        return getattr(observer, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
