"""The Grafana dashboard (docs/grafana-dashboard.json) asks only for series a real axon exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from axon_grpc import Dendrite
from axon_grpc.auth.wallet import KeypairWallet
from axon_grpc.testing import serve_axon

from .support import Dummy, dummy_forward

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"


def dashboard_series() -> set[str]:
    """Every ``axon_*`` series the dashboard's queries name."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", ())]
    return {name for expr in exprs for name in re.findall(r"\baxon_[a-z_]+", expr)}


async def test_every_series_of_the_dashboard_is_exposed_after_signed_and_session_calls() -> None:
    series = dashboard_series()
    assert {"axon_requests_total", "axon_session_opens_total", "axon_sessions_live"} <= series
    async with serve_axon(dummy_forward, metrics_port=0, metrics_hotkeys=8) as served:
        assert (await served.dendrite.call(served.info, Dummy(input=1))).output == 2  # signed
        sessions = Dendrite(KeypairWallet.generate(), sessions="required")
        try:
            answer = await sessions.call(served.info, Dummy(input=2))
        finally:
            await sessions.aclose()
        assert answer.output == 4 and answer.dendrite.status_code == 200
        exposition = served.axon.metrics.exposition()[0].decode()
    # A series with samples, or a labelled counter declared with no sample yet (no refusal, no eviction).
    exposed = set(re.findall(r"^(?:# TYPE )?(axon_[a-z_]+)", exposition, re.MULTILINE))
    missing = {name for name in series if name not in exposed}
    assert not missing, f"the dashboard queries series no axon exposes: {sorted(missing)}"
    assert 'scheme="session"' in exposition and 'axon_session_opens_total{result="accepted"} 1.0' in exposition
