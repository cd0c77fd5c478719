"""A client that is not Python: the Node.js example calls a running axon from the emitted .proto."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from axon_grpc.cli import codegen
from axon_grpc.testing import serve_axon

from .support import Dummy, dummy_forward

CLIENT_DIR = Path(__file__).resolve().parent.parent / "examples" / "node-client"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed; the Node.js interop test needs it"),
    pytest.mark.skipif(
        not (CLIENT_DIR / "node_modules").is_dir(),
        reason="examples/node-client/node_modules is missing: run `make test` (it runs npm ci)",
    ),
]


async def run_client(*args: str) -> dict:
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(CLIENT_DIR / "client.js"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return json.loads(out)


async def test_node_client_calls_the_axon_and_its_replay_is_refused(tmp_path: Path) -> None:
    proto = codegen.write(["tests.support:Dummy"], tmp_path)
    async with serve_axon(dummy_forward) as h:
        axon_hotkey = h.axon.wallet.hotkey.ss58_address
        result = await run_client(
            "--address",
            f"127.0.0.1:{h.axon.port}",
            "--proto",
            str(proto),
            "--axon-hotkey",
            axon_hotkey,
            "--request",
            '{"input": 7}',
            "--replay",
        )
        ping = await h.call(Dummy(input=1))
    assert result["code"] == 0
    assert result["request_bytes"] == "0807"  # field 1 varint 7, as protobuf-js encoded it
    assert result["response"]["output"] == 14 and result["response"]["input"] == 7
    assert result["axon_status_code"] == 200
    assert result["axon_hotkey"] == axon_hotkey
    assert result["hotkey"].startswith("5") and len(result["hotkey"]) == 48
    assert result["replay"] == {
        "code": 16,
        "details": "Not Verified with error: Nonce is too old, a newer one was last processed (rule R14)",
    }
    assert ping.dendrite.status_code == 200


async def test_node_client_signing_for_another_axon_is_refused(tmp_path: Path) -> None:
    proto = codegen.write(["tests.support:Dummy"], tmp_path)
    async with serve_axon(dummy_forward) as h, serve_axon(dummy_forward) as other:
        result = await run_client(
            "--address",
            f"127.0.0.1:{h.axon.port}",
            "--proto",
            str(proto),
            "--axon-hotkey",
            other.axon.wallet.hotkey.ss58_address,
            "--request",
            '{"input": 7}',
        )
    assert result["code"] == 16
    assert result["details"] == "Not Verified with error: Signature mismatch (rule R9)"
