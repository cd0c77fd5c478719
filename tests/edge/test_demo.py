"""``make demo`` (``axon-grpc demo``): the production path, and the in-process servers where
Envoy cannot run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .support import ROOT, environment, requires_pyvoy
from .test_fallback import WITHOUT_PYVOY


def demo(tmp_path: Path, *python: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, *(python or ("-m", "axon_grpc")), "demo"],
        env=environment(AXON_GRPC_HOME=str(tmp_path)),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout.splitlines()


@requires_pyvoy
def test_demo_serves_on_envoy_and_prints_three_answers_from_one_port(tmp_path: Path) -> None:
    code, lines = demo(tmp_path)
    printed = "\n".join(lines)
    assert code == 0, printed
    serving = re.search(r"^serve  Envoy serving gRPC and legacy HTTP on 127\.0\.0\.1:(\d+) ", printed, re.M)
    assert serving, printed
    port = serving.group(1)
    assert re.search(rf"^grpc   Dummy\(input=21\) -> output=42 status=200 'Success' .*port {port}\)$", printed, re.M)
    assert re.search(rf"^http   POST /Dummy input=21 -> output=42 status=200 'Success' .*port {port}\)$", printed, re.M)
    assert re.search(rf"^scrape GET /metrics -> \d+ lines \(port {port}\)", printed, re.M)
    for transport in ("grpc", "http"):
        assert f'status_class="2xx",synapse="Dummy",transport="{transport}"}} 1.0' in printed, printed
    assert lines[-1] == "serve  stopped on SIGTERM (exit status 0)"


def test_demo_without_envoy_says_why_and_shows_the_in_process_servers(tmp_path: Path) -> None:
    code, lines = demo(tmp_path, "-c", WITHOUT_PYVOY)
    printed = "\n".join(lines)
    assert code == 0, printed
    assert lines[0].startswith("edge   Envoy cannot run here: pyvoy is not installed"), printed
    assert re.search(r"^grpc   Dummy\(input=21\) -> output=42 status=200 'Success'", printed, re.M)
    assert re.search(r"^http   POST /Dummy input=21 -> output=42 status=200 'Success'", printed, re.M)
