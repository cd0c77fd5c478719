"""Structured logs: every line is one JSON object with the call's fields and none of its data."""

from __future__ import annotations

import io
import json
import logging

import pytest

from axon_grpc import logs
from axon_grpc.schema import schema_for
from axon_grpc.testing import serve_axon

from .support import Boom, Dummy, RawCaller, boom_forward, dummy_forward

SECRET_INPUT = 987654321


@pytest.fixture
def json_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("axon_grpc")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_json_lines_carry_the_call_fields_and_no_request_data(json_lines) -> None:
    async with serve_axon(dummy_forward, boom_forward) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.axon.wallet.hotkey.ss58_address)
        body = schema_for(Dummy).to_bytes({"input": SECRET_INPUT})
        metadata = raw.metadata(body)
        assert (await raw.call("Dummy", body, metadata))[1] is not None
        boom = schema_for(Boom).to_bytes({"text": "body text"})
        failed = await raw.call("Boom", boom)
        forged = raw.metadata(body, bt_header_dendrite_signature="0x" + "ab" * 64)
        await raw.call("Dummy", body, forged)
        await raw.close()
    text = json_lines.getvalue()
    entries = [json.loads(line) for line in text.splitlines()]  # every line parses
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    calls = [e for e in entries if "status" in e]
    by_status = {e["status"]: e for e in calls}
    assert set(by_status) == {200, 500, 401}
    for entry in calls:
        assert entry["caller_hotkey"] == raw.keypair.ss58_address
        assert entry["synapse"] in ("Dummy", "Boom") and entry["transport"] == "grpc"
        assert entry["duration_ms"] >= 0 and entry["level"] == "DEBUG"
    error_id = failed[2].rpartition("#")[2]
    assert by_status[500]["error_id"] == error_id and by_status[200]["error_id"] is None
    assert any(e.get("exception") == "RuntimeError" and error_id in e["message"] for e in entries)
    # never the body, a header value or a signature
    signed = dict(metadata)
    for secret in (
        str(SECRET_INPUT),
        "body text",
        signed["bt_header_dendrite_signature"],
        signed["bt_header_dendrite_signature"][2:],
        "ab" * 64,
        signed["computed_body_hash"],
        signed["bt_header_dendrite_nonce"],
    ):
        assert secret not in text


def test_configure_json_and_text(capsys) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure("INFO", "json")
        logging.getLogger("axon_grpc").info("hello %s", "there")
        line = capsys.readouterr().err.strip()
        assert json.loads(line)["message"] == "hello there"
        logs.configure("INFO", "text")
        logging.getLogger("axon_grpc").info("plain")
        assert capsys.readouterr().err.strip().endswith("INFO axon_grpc: plain")
        with pytest.raises(ValueError):
            logs.configure("INFO", "yaml")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
