"""Issue 13.9: a client's fault is a 4xx with a short message, never a 500 or a traceback.

Deeply nested JSON, a 5000-digit integer, a lone surrogate, a nonce of -10**400: in the
body or in an unsigned header, over both transports. Each is answered 400/401 (or the
legacy 422 for a body that is not JSON), logged at debug level only.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import ClassVar, Optional

import grpc
import pytest

from axon_grpc import Synapse
from axon_grpc.schema import schema_for
from axon_grpc.testing import serve_axon

from .support import Dummy, RawCaller, dummy_forward
from .test_bridge_client import Bridged, serve_bridge

DEEP = 100_000
HUGE_INT = "9" * 5000
MAX_MESSAGE = 200


class Texts(Synapse):
    """A string and a nested list field: where JSON nesting and surrogates land."""

    text: str = ""
    rows: list[list[int]] = []
    extra: Optional[dict[str, str]] = None

    required_hash_fields = ("text",)
    proto_json_fields: ClassVar[tuple[str, ...]] = ("rows",)  # carried as JSON over gRPC too


def texts_forward(synapse: Texts) -> Texts:
    return synapse


def _no_loud_logs(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], [r.getMessage()[:200] for r in loud]
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


def _signed_json(b: Bridged, synapse: Synapse, raw_body: str) -> tuple[dict[str, str], str]:
    headers, _ = b.client.prepare(synapse)
    return headers, raw_body


# -- HTTP bodies: each is refused before or after the signature, never with 500 ------------------

HTTP_BODIES = {
    "nested JSON": '{"text": "a", "rows": ' + "[" * DEEP + "]" * DEEP + "}",
    "nested object": '{"text": "a", "extra": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}",
    "5000-digit integer": '{"text": "a", "rows": [[' + HUGE_INT + "]]}",
    "lone surrogate": '{"text": "\\ud800"}',
    "huge float": '{"text": "a", "rows": [[1e99999]]}',
    "nonce -10**400 in the body's dendrite block": '{"text": "a", "dendrite": {"nonce": -1' + "0" * 400 + "}}",
    "5000-digit timeout in the body": '{"text": "a", "timeout": ' + HUGE_INT + "}",
}


#: Cases the legacy protocol reads nothing from (unsigned copies, the caller's own blocks):
#: answered as usual, 200 included, but never 500.
IGNORED = {"nonce -10**400 in the body's dendrite block", "nested JSON in input_obj", "huge int in input_obj"}


def _assert_client_status(case: str, status: int) -> None:
    assert status < 500 if case in IGNORED else 400 <= status < 500, status


@pytest.mark.parametrize("case", list(HTTP_BODIES))
async def test_http_body_faults_are_4xx(case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve_bridge(texts_forward, dummy_forward) as b:
        headers, _ = b.client.prepare(Texts(text="a"))
        response = await b.client.send("/Texts", headers, HTTP_BODIES[case])
        _assert_client_status(case, response.status)
        if case not in IGNORED:  # a 200 answers with the caller's own blocks, as the legacy axon
            assert len(response.json["message"]) <= MAX_MESSAGE, response.text[:300]
        await b.assert_still_serving()
    _no_loud_logs(caplog)


HTTP_HEADERS = {
    "nonce -10**400": {"bt_header_dendrite_nonce": "-1" + "0" * 400},
    "nonce of 5000 digits": {"bt_header_dendrite_nonce": HUGE_INT},
    "timeout of 5000 digits": {"timeout": HUGE_INT},
    "timeout 1e99999": {"timeout": "1e99999"},
    "nested JSON in input_obj": {"bt_header_input_obj_text": base64.b64encode(b"[" * DEEP + b"]" * DEEP).decode()},
    "huge int in input_obj": {"bt_header_input_obj_text": base64.b64encode(HUGE_INT.encode()).decode()},
    "version of 5000 digits": {"bt_header_dendrite_version": HUGE_INT},
    "btauth nonce -10**400": {"x-bittensor-version": "1", "x-bittensor-nonce": "-1" + "0" * 400},
    "btauth nonce": {"x-bittensor-version": "1", "x-bittensor-nonce": "-5"},
    "non-latin hotkey": {"bt_header_dendrite_hotkey": "5\u00e9\u00e9"},
}


@pytest.mark.parametrize("case", list(HTTP_HEADERS))
async def test_http_header_faults_are_4xx(case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve_bridge(texts_forward, dummy_forward) as b:
        headers, body = b.client.prepare(Texts(text="a"))
        headers.update(HTTP_HEADERS[case])
        response = await b.client.send(
            "/Texts", {k: v.encode("utf-8").decode("latin-1") for k, v in headers.items()}, body
        )
        _assert_client_status(case, response.status)
        assert len(response.json.get("message", "")) <= MAX_MESSAGE
        await b.assert_still_serving()
    _no_loud_logs(caplog)


# -- gRPC ---------------------------------------------------------------------------------------


def _nested_message(depth: int) -> bytes:
    """Field 2 (``rows``: repeated message) nested ``depth`` deep: more than any decoder allows."""
    inner = b""
    for _ in range(depth):
        inner = b"\x12" + _varint(len(inner)) + inner
    return inner


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


GRPC_BODIES = {
    "invalid UTF-8 (a lone surrogate's bytes) in a string": b"\x0a\x03\xed\xa0\x80",
    "nested messages": _nested_message(2000),
    "truncated": b"\x0a\x05ab",
    "huge length": b"\x0a" + _varint(2**62),
    "nested JSON in a JSON-carried field": b"\x12" + _varint(2 * DEEP) + b"[" * DEEP + b"]" * DEEP,
    "5000-digit integer in a JSON-carried field": b"\x12" + _varint(5004) + b"[[" + HUGE_INT.encode() + b"]]",
}

GRPC_METADATA = {
    "nonce -10**400": {"bt_header_dendrite_nonce": "-1" + "0" * 400},
    "nonce of 5000 digits": {"bt_header_dendrite_nonce": HUGE_INT},
    "timeout of 5000 digits": {"timeout": HUGE_INT},
    "timeout 1e99999": {"timeout": "1e99999"},
    "nested JSON in input_obj": {"bt_header_input_obj_text": base64.b64encode(b"[" * 5000 + b"]" * 5000).decode()},
    "version -1": {"bt_header_dendrite_version": "-1"},
    "btauth nonce -10**400": {"x-bittensor-version": "1", "x-bittensor-nonce": "-1" + "0" * 400},
    "btauth nonce of 5000 digits": {"x-bittensor-version": "1", "x-bittensor-nonce": HUGE_INT},
    "crypto unknown": {"bt_header_dendrite_crypto": "rsa" * 100},
}


@pytest.fixture
async def grpc_axon():
    async with serve_axon(texts_forward, dummy_forward) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.info.hotkey)
        try:
            yield h, raw
        finally:
            await raw.close()


async def _assert_grpc_client_fault(
    h, raw: RawCaller, body: bytes, metadata: list[tuple[str, str]], ignored: bool = False
) -> None:
    status, _, details, trailing = await raw.call("Texts", body, metadata)
    if ignored and status is grpc.StatusCode.OK:
        return
    assert status in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED), (status, details)
    assert len(details) <= MAX_MESSAGE, details
    assert trailing.get("bt_header_axon_status_code") in ("400", "401")
    result = await h.call(Dummy(input=5))
    assert result.output == 10


@pytest.mark.parametrize("case", list(GRPC_BODIES))
async def test_grpc_body_faults_are_client_statuses(grpc_axon, case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h, raw = grpc_axon
    body = GRPC_BODIES[case]
    await _assert_grpc_client_fault(h, raw, body, raw.metadata(body, method="Texts"))
    _no_loud_logs(caplog)


@pytest.mark.parametrize("case", list(GRPC_METADATA))
async def test_grpc_metadata_faults_are_client_statuses(grpc_axon, case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h, raw = grpc_axon
    body = schema_for(Texts).to_bytes({"text": "a"})
    metadata = dict(raw.metadata(body, method="Texts"))
    metadata.update(GRPC_METADATA[case])
    await _assert_grpc_client_fault(h, raw, body, list(metadata.items()), ignored=case in IGNORED)
    _no_loud_logs(caplog)


async def test_json_refusals_name_no_more_than_a_short_reason() -> None:
    async with serve_bridge(texts_forward) as b:
        headers, _ = b.client.prepare(Texts(text="a"))
        response = await b.client.send("/Texts", headers, HTTP_BODIES["nested JSON"])
        assert response.status == 400
        assert response.message == "Improperly formatted request. Could not parse body: nested too deeply"
        headers, _ = b.client.prepare(Texts(text="a"))
        response = await b.client.send("/Texts", headers, HTTP_BODIES["5000-digit integer"])
        assert response.status == 400
        assert response.message == "Improperly formatted request. Could not parse body: a number is too long"
    assert json  # imported for the module's readers: the bodies above are JSON text


def test_refusal_log_lines_are_rate_limited() -> None:
    from axon_grpc.server.reporting import LineBudget

    budget = LineBudget(5)
    assert sum(budget.take() for _ in range(1000)) == 5  # a burst: the bucket's worth, then nothing
    budget.last -= 1.0  # a second later: refilled
    assert sum(budget.take() for _ in range(1000)) == 5
