"""The Node.js client (@grpc/grpc-js) calls an axon served by ``axon-grpc serve`` (Envoy)."""

from __future__ import annotations

import sys
from pathlib import Path

from axon_grpc.auth.keys import Keypair
from axon_grpc.cli import codegen

from ..test_node_client import pytestmark as node_marks
from ..test_node_client import run_client
from .support import environment, requires_pyvoy, start_server, stop

pytestmark = [requires_pyvoy, *node_marks]

SEED = "0x" + "45" * 32
AXON_HOTKEY = Keypair.create_from_seed(SEED).ss58_address


async def test_node_client_calls_the_envoy_axon_and_its_replay_is_refused(tmp_path: Path) -> None:
    proto = codegen.write(["tests.support:Dummy"], tmp_path)
    served = start_server(
        [
            sys.executable,
            "-m",
            "axon_grpc",
            "serve",
            "tests.edge.axon_app:build_axon",
            "--axon.ip",
            "127.0.0.1",
            "--axon.port",
            "0",
            "--grace",
            "2",
        ],
        environment(EDGE_TEST_AXON_SEED=SEED),
    )
    process, port = served.process, served.port
    try:
        result = await run_client(
            "--address",
            f"127.0.0.1:{port}",
            "--proto",
            str(proto),
            "--axon-hotkey",
            AXON_HOTKEY,
            "--request",
            '{"input": 7}',
            "--replay",
        )
    finally:
        assert stop(process) == 0
    assert result["code"] == 0
    assert result["response"]["output"] == 14 and result["response"]["input"] == 7
    assert result["axon_status_code"] == 200
    assert result["axon_hotkey"] == AXON_HOTKEY
    assert result["replay"]["code"] == 16  # UNAUTHENTICATED, from the trailers Envoy carried
    assert result["replay"]["details"].startswith("Not Verified with error: Nonce")
