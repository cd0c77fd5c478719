"""Where pyvoy cannot be imported, ``serve`` says so in one line and serves with grpcio."""

from __future__ import annotations

import sys

from axon_grpc import Dendrite
from axon_grpc.auth.keys import Keypair
from axon_grpc.info import AxonInfo

from ..support import Dummy
from .support import environment, start_server, stop

SEED = "0x" + "17" * 32

#: The command, in an interpreter where ``import pyvoy`` fails (as where it is not installed).
WITHOUT_PYVOY = "import sys; sys.modules['pyvoy'] = None; from axon_grpc.cli import main; sys.exit(main(sys.argv[1:]))"


async def test_serve_falls_back_to_grpcio_without_pyvoy() -> None:
    served = start_server(
        [
            sys.executable,
            "-c",
            WITHOUT_PYVOY,
            "serve",
            "tests.edge.axon_app:build_axon",
            "--axon.ip",
            "127.0.0.1",
            "--axon.port",
            "0",
        ],
        environment(EDGE_TEST_AXON_SEED=SEED),
    )
    process, port = served.process, served.port
    try:
        hotkey = Keypair.create_from_seed(SEED).ss58_address
        info = AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=hotkey, coldkey="")
        async with Dendrite() as dendrite:
            result = await dendrite.call(info, Dummy(input=4), timeout=10, deserialize=False)
        assert result.output == 8
    finally:
        assert stop(process) == 0
    first = served.output()[0]
    assert first.startswith("axon-grpc: pyvoy is not installed")
    assert first.endswith("serving with grpcio instead (--server grpcio)")
