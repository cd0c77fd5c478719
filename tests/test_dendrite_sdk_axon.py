"""The Dendrite against the real Bittensor SDK 10.5.0 axon (a legacy miner).

That SDK conflicts with the test extra's, so the axon runs in its own virtualenv:
``$AXON_GRPC_LEGACY_PYTHON``, else ``.venv/legacy/bin/python`` (``make test`` and ``make
bench`` build it, about 40 s once). Where neither exists the tests are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Optional

import pytest

from axon_grpc import AxonInfo, Dendrite, KeypairWallet, StreamingSynapse

from .support import Dummy

ROOT = Path(__file__).resolve().parent.parent
LEGACY_PYTHON = Path(os.environ.get("AXON_GRPC_LEGACY_PYTHON") or ROOT / ".venv" / "legacy" / "bin" / "python")
SERVER = ROOT / "bench" / "legacy_server.py"


class Unknown(Dummy):
    """Not attached to the SDK axon."""


@pytest.fixture(scope="module")
def sdk_axon() -> Iterator[AxonInfo]:
    if not LEGACY_PYTHON.exists():
        pytest.skip(
            f"no Python with bittensor==10.5.0 at {LEGACY_PYTHON} (make bench builds .venv/legacy, "
            "or set AXON_GRPC_LEGACY_PYTHON)"
        )
    process = subprocess.Popen(
        [str(LEGACY_PYTHON), str(SERVER), "--port", "0"],  # the port it bound is in its ready line
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
            version=10005000,
            ip="127.0.0.1",
            port=int(ready["port"]),
            ip_type=4,
            hotkey=ready["hotkey"],
            coldkey=ready["hotkey"],
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


# -- streaming synapses over the legacy protocol ---------------------------------------------


class Story(StreamingSynapse):
    """The SDK axon's ``Story``: ``words`` chunks ``w0 w1 ...``."""

    prompt: str = ""
    words: int = 3
    completion: Optional[str] = None


class Tale(Story):
    """An SDK-style synapse: collects its text while streaming and answers it in ``extract_response_json``."""

    async def process_streaming_response(self, response: Any) -> AsyncIterator[str]:
        self.completion = ""
        async for data in response.content.iter_any():
            self.completion += data.decode()
            yield data.decode()

    def extract_response_json(self, response: Any) -> dict[str, Any]:
        headers = {k.decode(): v.decode() for k, v in response.__dict__["_raw_headers"]}
        return {"name": headers["name"], "prompt": self.prompt, "completion": self.completion}


class Endless(Story):
    pass


@pytest.mark.parametrize("transport", ["http", "auto"])
async def test_sdk_axon_streams_to_the_dendrite(sdk_axon: AxonInfo, transport: str) -> None:
    dendrite = Dendrite(KeypairWallet.generate(), transport=transport)
    try:
        items = [item async for item in await dendrite.forward(sdk_axon, Story(words=4), timeout=10.0, streaming=True)]
    finally:
        await dendrite.aclose()
    *chunks, final = items
    assert "".join(chunks) == "w0 w1 w2 w3 "
    assert (final.dendrite.status_code, final.dendrite.status_message) == (200, "Success")
    assert final.axon.status_code == 200 and final.axon.hotkey == sdk_axon.hotkey
    assert dendrite.transport_for(sdk_axon) == "http"


async def test_sdk_style_synapse_fills_its_final_fields(sdk_axon: AxonInfo) -> None:
    """A synapse that collects its text and answers it from ``extract_response_json``,
    reading the raw headers as SDK subnets do (the route is the class name: ``Story``)."""
    renamed = type("Story", (Tale,), {})
    dendrite = Dendrite(KeypairWallet.generate(), transport="http")
    try:
        final = await dendrite.call(sdk_axon, renamed(words=2, prompt="p"), timeout=10.0, deserialize=False)
    finally:
        await dendrite.aclose()
    assert final.dendrite.status_code == 200, final.dendrite.status_message
    assert (final.completion, final.prompt) == ("w0 w1 ", "p")


async def test_sdk_axon_endless_stream_ends_at_the_timeout(sdk_axon: AxonInfo) -> None:
    dendrite = Dendrite(KeypairWallet.generate(), transport="http")
    started = time.monotonic()
    try:
        items = [item async for item in dendrite.call_stream(sdk_axon, Endless(), timeout=1.0, deserialize=False)]
    finally:
        await dendrite.aclose()
    elapsed = time.monotonic() - started
    *chunks, final = items
    assert "tick" in "".join(chunks)
    assert (final.dendrite.status_code, final.dendrite.status_message) == (408, "Request timeout after 1.0 seconds")
    assert elapsed < 1.0 + 2.5  # the stream is endless: it ended at the timeout


async def test_sdk_axon_stream_with_verify_response_is_refused(sdk_axon: AxonInfo) -> None:
    dendrite = Dendrite(KeypairWallet.generate(), transport="http", verify_response=True)
    try:
        items = [item async for item in dendrite.call_stream(sdk_axon, Story(words=2), timeout=10.0, deserialize=False)]
    finally:
        await dendrite.aclose()
    assert len(items) == 1
    assert items[0].dendrite.status_code == 422
    assert items[0].dendrite.status_message.startswith("Answer not verified: streamed answers are not signed")
