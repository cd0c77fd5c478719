"""The Dendrite against the real Bittensor SDK 10.5.0 axon (a legacy miner).

That SDK conflicts with the test extra's, so the axon runs in its own virtualenv:
``$AXON_GRPC_LEGACY_PYTHON``, else ``.venv/legacy/bin/python`` (``make test`` and ``make
bench`` build it, about 40 s once). Where neither exists the tests are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from axon_grpc import AxonInfo, Dendrite, KeypairWallet
from axon_grpc.testing import free_port

from .support import Dummy

ROOT = Path(__file__).resolve().parent.parent
LEGACY_PYTHON = Path(os.environ.get("AXON_GRPC_LEGACY_PYTHON") or ROOT / ".venv" / "legacy" / "bin" / "python")
SERVER = ROOT / "axon_grpc" / "bench" / "legacy_server.py"


class Unknown(Dummy):
    """Not attached to the SDK axon."""


@pytest.fixture(scope="module")
def sdk_axon() -> Iterator[AxonInfo]:
    if not LEGACY_PYTHON.exists():
        pytest.skip(
            f"no Python with bittensor==10.5.0 at {LEGACY_PYTHON} (make bench builds .venv/legacy, "
            "or set AXON_GRPC_LEGACY_PYTHON)"
        )
    port = free_port()
    process = subprocess.Popen(
        [str(LEGACY_PYTHON), str(SERVER), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("BENCH-READY "):
            pytest.fail(f"the SDK 10.5.0 axon did not start (exit status {process.poll()})")
        ready = json.loads(line.split(" ", 1)[1])
        assert ready["bittensor"] == "10.5.0"
        yield AxonInfo(
            version=10005000, ip="127.0.0.1", port=port, ip_type=4, hotkey=ready["hotkey"], coldkey=ready["hotkey"]
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("transport", ["http", "auto"])
async def test_sdk_axon_answers_the_legacy_request(sdk_axon: AxonInfo, transport: str) -> None:
    dendrite = Dendrite(KeypairWallet.generate(), transport=transport)
    try:
        results = await dendrite.forward([sdk_axon] * 3, Dummy(input=21), timeout=10.0, deserialize=False)
        for result in results:
            assert (result.dendrite.status_code, result.dendrite.status_message) == (200, "Success")
            assert result.output == 42
            assert result.axon.status_code == 200 and result.axon.hotkey == sdk_axon.hotkey
        assert dendrite.transport_for(sdk_axon) == "http"
        missing = await dendrite.call(sdk_axon, Unknown(input=1), timeout=10.0, deserialize=False)
        assert missing.dendrite.status_code == 404
        assert missing.dendrite.status_message.startswith("Synapse name 'Unknown' not found.")
    finally:
        await dendrite.aclose()


async def test_sdk_axon_answer_fails_verify_response(sdk_axon: AxonInfo) -> None:
    """SDK 10.5 axons do not sign answers: with ``verify_response`` they are refused, clearly."""
    dendrite = Dendrite(KeypairWallet.generate(), transport="http", verify_response=True)
    try:
        result = await dendrite.call(sdk_axon, Dummy(input=21), timeout=10.0, deserialize=False)
    finally:
        await dendrite.aclose()
    assert result.dendrite.status_code == 422
    assert result.dendrite.status_message.startswith("Answer not verified: ")
    assert result.output is None


async def test_sdk_axon_refuses_a_changed_signature(sdk_axon: AxonInfo) -> None:
    """The request really is checked by the SDK: a signature for another axon is 401."""
    dendrite = Dendrite(KeypairWallet.generate(), transport="http")
    wrong = AxonInfo(
        version=0,
        ip=sdk_axon.ip,
        port=sdk_axon.port,
        ip_type=4,
        hotkey=KeypairWallet.generate().hotkey.ss58_address,
        coldkey="",
    )
    try:
        result = await dendrite.call(wrong, Dummy(input=1), timeout=10.0, deserialize=False)
    finally:
        await dendrite.aclose()
    assert result.dendrite.status_code == 401, result.dendrite.status_message
    assert result.dendrite.status_message.startswith("Not Verified with error: Signature mismatch")
