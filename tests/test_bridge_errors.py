"""Every refusal of PROTOCOL.md's error table over the bridge, plus its own bounds.

Real uvicorn on loopback, real sr25519 signatures, requests built like a 10.5
dendrite's. After each bad request a good one still gets 200.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time

import grpc
import pytest

from axon_grpc.server.pipeline import LEGACY_HASH_MISMATCH

from .support import Boom, Dummy, RawCaller, Said
from .test_bridge_client import Bridged, LegacyClient, Slow, serve_bridge

HASH = r"[0-9a-f]{64}"


@pytest.fixture
async def bridged():
    async with serve_bridge() as b:
        yield b


async def test_unknown_synapse_is_404_with_the_legacy_message(bridged: Bridged) -> None:
    class NotAttached(Dummy):
        pass

    response = await bridged.client.call(NotAttached(input=1))
    assert response.status == 404
    message = "Synapse name 'NotAttached' not found. Available synapses ['Synapse', 'Dummy', 'Boom', 'Slow', 'Said']"
    assert response.json == {"message": message}
    h = response.headers
    assert h["name"] == "Synapse"
    assert h["bt_header_axon_status_code"] == "404" and h["bt_header_axon_status_message"] == message
    assert "bt_header_axon_signature" not in h  # as the legacy server: an unsigned base synapse
    await bridged.assert_still_serving()


async def test_any_other_path_is_the_same_404(bridged: Bridged) -> None:
    for method, path in (("GET", "/"), ("POST", "/a/b"), ("GET", "/docs")):
        response = await bridged.client.send(path, {}, None, method=method)
        assert response.status == 404, path
        assert response.message.startswith(f"Synapse name '{path[1:]}' not found. Available synapses [")


@pytest.mark.parametrize(
    "header, value, message",
    [
        ("bt_header_dendrite_nonce", "soon", "bt_header_dendrite_nonce must be a non-negative decimal integer"),
        ("timeout", "twelve", "timeout must be a number of seconds"),
        ("bt_header_dendrite_uuid", "u" * 65, "bt_header_dendrite_uuid is longer than 64 characters"),
    ],
)
async def test_unparsable_headers_are_400(bridged: Bridged, header: str, value: str, message: str) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    headers[header] = value
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 400
    assert response.message == "Improperly formatted request. " + message
    assert response.headers["bt_header_axon_status_code"] == "400"
    await bridged.assert_still_serving()


async def test_the_callers_axon_headers_are_never_read_or_echoed(bridged: Bridged) -> None:
    """``bt_header_axon_*`` describe the axon: the answer carries the axon's own, whatever was sent."""
    headers, body = bridged.client.prepare(Dummy(input=3))
    headers.update(bt_header_axon_port="-x", bt_header_axon_ip="6.6.6.6", bt_header_axon_signature="0xfake")
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 200 and response.json["output"] == 6
    assert response.headers["bt_header_axon_ip"] == "127.0.0.1"
    assert response.headers["bt_header_axon_port"] == str(bridged.axon.external_port)


async def test_unparsable_header_value_is_not_echoed(bridged: Bridged) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    headers["bt_header_dendrite_nonce"] = "soon"
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 400
    assert "soon" not in response.message


async def test_blacklist_sees_the_signed_body_never_the_input_obj_header(bridged: Bridged) -> None:
    """The fixture's blacklist refuses ``input == 13``: it must see the signed body's value."""
    headers, body = bridged.client.prepare(Dummy(input=3))
    forged = dict(headers, bt_header_input_obj_input=base64.b64encode(b"13").decode())  # unsigned copy
    response = await bridged.client.send("/Dummy", forged, body)
    assert response.status == 200 and response.json["output"] == 6
    headers, body = bridged.client.prepare(Dummy(input=13))  # its header copy says 0 (MA==)
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 403
    assert response.message == "Forbidden. Key is blacklisted: input 13 is blacklisted."
    assert response.headers["bt_header_axon_status_code"] == "403"
    assert bridged.verifies(response)


async def test_bad_signature_is_401_without_echo(bridged: Bridged) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    signature = headers["bt_header_dendrite_signature"]
    headers["bt_header_dendrite_signature"] = signature[:-2] + ("00" if signature[-2:] != "00" else "01")
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 401
    assert response.message == "Not Verified with error: Signature mismatch"
    assert bridged.verifies(response)
    await bridged.assert_still_serving()


@pytest.mark.parametrize("value", [None, ""])
async def test_missing_or_empty_signature_is_401(bridged: Bridged, value: str | None) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    del headers["bt_header_dendrite_signature"]
    if value is not None:
        headers["bt_header_dendrite_signature"] = value
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 401
    assert response.message == "Not Verified with error: Missing Signature"
    assert bridged.verifies(response)
    await bridged.assert_still_serving()


@pytest.mark.parametrize("value", [None, ""])
async def test_missing_hotkey_is_401_in_the_sdk_axons_words(bridged: Bridged, value: str | None) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    del headers["bt_header_dendrite_hotkey"]
    if value is not None:
        headers["bt_header_dendrite_hotkey"] = value
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 401
    # SDK 10.5: default_verify builds Keypair(ss58_address=None), which refuses with this text
    assert response.message == "Not Verified with error: No SS58 formatted address or public key provided."
    await bridged.assert_still_serving()


async def test_replay_is_401(bridged: Bridged) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    first = await bridged.client.send("/Dummy", headers, body)
    assert first.status == 200
    again = await bridged.client.send("/Dummy", headers, body)
    assert again.status == 401
    assert again.message == "Not Verified with error: Nonce is too old, a newer one was last processed"
    assert bridged.verifies(again)
    await bridged.assert_still_serving()


async def test_stale_nonce_is_401(bridged: Bridged) -> None:
    fresh = LegacyClient(bridged.client.http_port, bridged.hotkey, bridged.client.keypair)  # a new dendrite uuid
    try:
        response = await fresh.call(Dummy(input=3), nonce=time.time_ns() - 18 * 10**9)
    finally:
        await fresh.close()
    assert response.status == 401
    assert re.fullmatch(
        r"Not Verified with error: Nonce is too old: acceptable delta is 16\.00 seconds "
        r"but request was 18\.\d\d seconds old",
        response.message,
    )
    await bridged.assert_still_serving()


async def test_slow_forward_is_408(bridged: Bridged) -> None:
    response = await bridged.client.call(Slow(seconds=1.0), timeout=0.3)
    assert response.status == 408
    assert response.message == "Response timeout after: 0.3s"
    assert response.headers["bt_header_axon_status_code"] == "408"
    assert bridged.verifies(response)
    await bridged.assert_still_serving()


async def test_body_changed_after_signing_is_the_documented_400(bridged: Bridged) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    tampered = body.replace('"input": 3', '"input": 4')
    response = await bridged.client.send("/Dummy", headers, tampered)
    assert response.status == 400
    assert response.message == LEGACY_HASH_MISMATCH  # neither hash echoed
    assert headers["computed_body_hash"] not in response.message
    assert bridged.verifies(response)
    await bridged.assert_still_serving()


async def test_body_that_is_not_json_is_fastapis_422(bridged: Bridged) -> None:
    headers, _ = bridged.client.prepare(Dummy(input=3))
    response = await bridged.client.send("/Dummy", headers, "this is not json")
    assert response.status == 422
    assert response.json == {
        "detail": [
            {
                "type": "json_invalid",
                "loc": ["body", 0],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": "Expecting value"},
            }
        ]
    }
    assert not [name for name in response.header_names if name.startswith("bt_header_")]
    await bridged.assert_still_serving()


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("[1, 2]", "expected a JSON object, got list"),
        ('"text"', "expected a JSON object, got str"),
        ('{"input": "three"}', "input: Input should be a valid integer"),
        ('{"input": {"a": 1}}', "input: Input should be a valid integer"),
    ],
)
async def test_json_of_the_wrong_shape_is_400(bridged: Bridged, body: str, fragment: str) -> None:
    headers, _ = bridged.client.prepare(Dummy(input=3))
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 400
    prefix = "Improperly formatted request. Could not parse body into synapse of type Dummy: "
    assert response.message.startswith(prefix) and fragment in response.message, response.message
    assert "three" not in response.message
    await bridged.assert_still_serving()


async def test_body_that_is_not_utf8_is_400(bridged: Bridged) -> None:
    headers, _ = bridged.client.prepare(Dummy(input=3))
    response = await bridged.client.send("/Dummy", headers, b'{"input": "\xff"}')
    assert response.status == 400
    assert response.message == "Improperly formatted request. Could not parse body: not UTF-8 JSON"
    await bridged.assert_still_serving()


async def test_forward_exception_is_500_with_an_id_and_no_detail(bridged: Bridged, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="axon_grpc"):
        response = await bridged.client.call(Boom(text="x"))
    assert response.status == 500
    match = re.fullmatch(r"Internal Server Error #([0-9a-f-]{36})", response.message)
    assert match, response.message
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.headers["bt_header_axon_status_message"] == response.message
    assert bridged.verifies(response)
    assert any(match.group(1) in r.getMessage() for r in caplog.records)
    await bridged.assert_still_serving()


async def test_synapse_exception_is_500_with_its_message(bridged: Bridged) -> None:
    response = await bridged.client.call(Said(text="x"))
    assert response.status == 500
    assert response.message == "the miner says no"
    await bridged.assert_still_serving()


async def test_huge_body_is_413(bridged: Bridged) -> None:
    bridged.axon.http.max_request_bytes = 2048
    headers, _ = bridged.client.prepare(Dummy(input=3))
    big = json.dumps({"input": 3, "padding": "x" * 10_000})
    response = await bridged.client.send("/Dummy", headers, big)
    assert response.status == 413
    assert response.json == {"message": "Request body too large: limit is 2048 bytes"}
    assert response.headers["bt_header_axon_status_code"] == "413"
    await bridged.assert_still_serving()


async def test_huge_chunked_body_is_413_while_streaming(bridged: Bridged) -> None:
    bridged.axon.http.max_request_bytes = 2048
    headers, _ = bridged.client.prepare(Dummy(input=3))

    async def chunks():
        yield b'{"input": 3, "padding": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = await bridged.client.send("/Dummy", headers, chunks())  # no Content-Length: chunked
    assert response.status == 413
    assert response.message == "Request body too large: limit is 2048 bytes"
    assert bridged.verifies(response)  # refused after admission: the header synapse reports it
    await bridged.assert_still_serving()


async def test_too_many_headers_is_431(bridged: Bridged) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    headers.update({f"x-filler-{i}": "1" for i in range(150)})
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 431
    assert response.json == {"message": "Request headers too many: limit is 100 headers"}
    await bridged.assert_still_serving()


async def test_too_large_headers_are_431(bridged: Bridged) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    headers["x-filler"] = "y" * (40 * 1024)
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 431
    assert response.json == {"message": "Request headers too large: limit is 32768 bytes"}
    await bridged.assert_still_serving()


async def test_header_values_from_the_body_cannot_inject_headers(bridged: Bridged) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    payload = json.loads(body)
    payload["dendrite"]["uuid"] = "x\r\nset-cookie: evil=1"
    response = await bridged.client.send("/Dummy", headers, json.dumps(payload))
    assert response.status == 200
    assert "set-cookie" not in response.header_names
    assert response.headers["bt_header_dendrite_uuid"] == "x??set-cookie: evil=1"


# -- one nonce store for both transports --------------------------------------------------------


async def test_a_nonce_used_over_grpc_is_refused_over_http(bridged: Bridged) -> None:
    raw = RawCaller(f"127.0.0.1:{bridged.axon.port}", bridged.hotkey)
    http = LegacyClient(bridged.client.http_port, bridged.hotkey, raw.keypair, raw.uuid)
    try:
        nonce = time.time_ns()
        body = b"\x08\x03"
        status, _, _, _ = await raw.call("Dummy", body, raw.metadata(body, nonce=nonce))
        assert status == grpc.StatusCode.OK
        response = await http.call(Dummy(input=3), nonce=nonce)  # same hotkey, uuid and nonce
        assert response.status == 401
        assert response.message == "Not Verified with error: Nonce is too old, a newer one was last processed"
        assert (await http.call(Dummy(input=3))).status == 200
    finally:
        await http.close()
        await raw.close()


async def test_a_nonce_used_over_http_is_refused_over_grpc(bridged: Bridged) -> None:
    raw = RawCaller(f"127.0.0.1:{bridged.axon.port}", bridged.hotkey)
    http = LegacyClient(bridged.client.http_port, bridged.hotkey, raw.keypair, raw.uuid)
    try:
        nonce = time.time_ns()
        assert (await http.call(Dummy(input=3), nonce=nonce)).status == 200
        body = b"\x08\x03"
        status, _, details, _ = await raw.call("Dummy", body, raw.metadata(body, nonce=nonce))
        assert status == grpc.StatusCode.UNAUTHENTICATED
        assert details == "Not Verified with error: Nonce is too old, a newer one was last processed (rule R14)"
    finally:
        await http.close()
        await raw.close()
