"""The HTTP bridge end to end: legacy round trips, the seed's surface, the server's lifecycle."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import urllib.error
import urllib.request
from typing import Optional

import aiohttp
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI
from starlette.requests import Request

import bridge
from axon_grpc import Keypair, Synapse
from axon_grpc.errors import BodyHashMismatch, NotVerifiedException, SynapseParsingError
from axon_grpc.synapse import EMPTY_HASH
from axon_grpc.testing import build_axon, free_port
from bridge import AxonMiddleware, FastAPIThreadedServer, HttpBridge, create_error_response, log_and_handle_error

from .support import Dummy, dummy_forward
from .test_bridge_client import Bridged, LegacyClient, serve_bridge

#: The header names of the real 10.5.0 axon's 200 for Dummy (conformance/response_200_success.json).
LEGACY_200_HEADERS = [
    "content-length",
    "content-type",
    "name",
    "timeout",
    "bt_header_axon_status_code",
    "bt_header_axon_status_message",
    "bt_header_axon_process_time",
    "bt_header_axon_ip",
    "bt_header_axon_port",
    "bt_header_axon_hotkey",
    "bt_header_dendrite_ip",
    "bt_header_dendrite_version",
    "bt_header_dendrite_nonce",
    "bt_header_dendrite_uuid",
    "bt_header_dendrite_hotkey",
    "bt_header_dendrite_signature",
    "bt_header_input_obj_input",
    "header_size",
    "total_size",
    "computed_body_hash",
]


@pytest.fixture
async def bridged():
    async with serve_bridge() as b:
        yield b


async def test_round_trip_answers_like_the_legacy_axon(bridged: Bridged) -> None:
    headers, body = bridged.client.prepare(Dummy(input=3))
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert [n for n in response.header_names if n not in ("date", "server")] == LEGACY_200_HEADERS
    data = response.json
    assert Dummy(**data).output == 6  # what a dendrite does with it
    assert data["input"] == 3 and data["output"] == 6 and data["name"] == "Dummy"
    assert data["axon"]["status_code"] == 200 and data["axon"]["status_message"] == "Success"
    assert data["dendrite"] == json.loads(body)["dendrite"]  # the request body's block, as the legacy axon
    h = response.headers
    assert h["bt_header_axon_status_code"] == "200" and h["bt_header_axon_status_message"] == "Success"
    assert float(h["bt_header_axon_process_time"]) > 0
    assert h["bt_header_axon_hotkey"] == bridged.hotkey
    assert h["bt_header_dendrite_hotkey"] == bridged.client.keypair.ss58_address
    assert h["computed_body_hash"] == headers["computed_body_hash"]
    if sys.version_info[:2] == (3, 11):  # the capture's Python; others size dicts differently, as would
        assert h["header_size"] == "464"  # a legacy axon on them: CPython's figure for this header dict
    assert int(h["total_size"]) > len(response.text)


async def test_forward_sees_the_verified_header_blocks() -> None:
    seen: list[Dummy] = []

    def spy(synapse: Dummy) -> Dummy:
        seen.append(synapse.model_copy())
        synapse.output = 1
        return synapse

    async with serve_bridge(spy) as b:
        headers, body = b.client.prepare(Dummy(input=3))
        payload = json.loads(body)
        payload["dendrite"]["hotkey"] = "5-not-the-signer"
        response = await b.client.send("/Dummy", headers, json.dumps(payload))
    assert response.status == 200
    (synapse,) = seen
    assert synapse.dendrite.hotkey == b.client.keypair.ss58_address  # the signed header, not the body
    assert synapse.dendrite.ip == "127.0.0.1" and synapse.dendrite.port  # the TCP peer
    assert synapse.axon.hotkey == b.hotkey and synapse.input == 3


async def test_ping_route(bridged: Bridged) -> None:
    response = await bridged.client.call(Synapse())
    assert response.status == 200
    assert response.json["name"] == "Synapse"
    assert response.headers["computed_body_hash"] == EMPTY_HASH
    assert response.headers["bt_header_axon_status_message"] == "Success"


async def test_get_without_a_body_uses_the_defaults(bridged: Bridged) -> None:
    headers, _ = bridged.client.prepare(Dummy(input=0))  # signed over the default input
    response = await bridged.client.send("/Dummy", headers, None, method="GET")
    assert response.status == 200, response.text
    assert response.json["input"] == 0 and response.json["output"] == 0
    headers, _ = bridged.client.prepare(Synapse())
    response = await bridged.client.send("/Synapse", headers, None, method="GET")
    assert response.status == 200


async def test_seed_surface(bridged: Bridged) -> None:
    axon = bridged.axon
    assert isinstance(axon.http, HttpBridge)
    assert isinstance(axon.app, FastAPI)
    assert isinstance(axon.router, APIRouter)
    assert axon.middleware_cls is AxonMiddleware
    assert isinstance(axon.fast_config, uvicorn.Config) and axon.fast_config.port == axon.http_port
    assert isinstance(axon.fast_server, FastAPIThreadedServer) and axon.fast_server.is_running
    routes: dict[str, set[str]] = {}
    for route in axon.router.routes:
        routes.setdefault(route.path, set()).update(route.methods)
    assert routes == {f"/{n}": {"POST", "GET"} for n in ("Synapse", "Dummy", "Boom", "Slow", "Said")}
    assert {r.path for r in axon.app.routes} >= set(routes)
    assert set(axon.app.openapi()["paths"]) >= set(routes)
    assert bridge.log_and_handle_error is log_and_handle_error
    assert set(bridge.__all__) == {
        "HttpBridge",
        "AxonMiddleware",
        "FastAPIThreadedServer",
        "create_error_response",
        "log_and_handle_error",
    }
    server = axon.fast_server
    await axon.stop_async(grace=1.0)
    assert not server.is_running
    probe = LegacyClient(int(axon.http_port), bridged.hotkey)
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            await probe.send("/", {}, None, method="GET")
    finally:
        await probe.close()


def test_bridge_limits_are_constructor_arguments_and_attributes() -> None:
    axon = build_axon(dummy_forward, http_port=free_port(), max_request_bytes=1234)
    assert axon.http.max_request_bytes == 1234  # from the axon by default
    custom = HttpBridge(axon, max_request_bytes=99, max_header_count=7, max_header_bytes=512)
    assert (custom.max_request_bytes, custom.max_header_count, custom.max_header_bytes) == (99, 7, 512)
    custom.max_header_count = 8
    assert custom.limits.max_header_count == 8


async def test_the_bridge_is_handed_its_collaborators_not_the_axon() -> None:
    """Built from TransportParts alone (port 0: bound by the system), it serves; it keeps no Axon."""
    axon = build_axon(dummy_forward)
    parts = axon.transport_parts(port=0)
    assert parts.host == "127.0.0.1" and parts.pipeline is axon.pipeline and parts.drain is axon.drain
    http = HttpBridge(parts)
    for endpoint in parts.endpoints.values():
        http.add_route(endpoint)
    assert not hasattr(http, "axon") and http.asgi.axon is None
    await http.start()
    client = LegacyClient(int(http.bound_port or 0), axon.wallet.hotkey.ss58_address)
    try:
        reply = await client.call(Dummy(input=6))
        assert (reply.status, reply.json["output"]) == (200, 12)
    finally:
        await client.close()
        await http.stop(None)


async def test_attach_after_start_is_served(bridged: Bridged) -> None:
    class Late(Synapse):
        value: int = 0

    def late(synapse: Late) -> Late:
        synapse.value += 1
        return synapse

    bridged.axon.attach(forward_fn=late)
    response = await bridged.client.call(Late(value=41))
    assert response.status == 200 and response.json["value"] == 42
    assert "/Late" in {r.path for r in bridged.axon.router.routes}


async def test_other_routes_of_the_app_are_served(bridged: Bridged) -> None:
    @bridged.axon.app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    response = await bridged.client.send("/healthz", {}, None, method="GET")
    assert response.status == 200 and response.json == {"ok": True}


async def test_restart_serves_again(bridged: Bridged) -> None:
    axon = bridged.axon
    await axon.stop_async(grace=None)
    await axon.start_async()
    await bridged.assert_still_serving()


async def test_port_in_use_is_a_clear_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        axon = build_axon(dummy_forward, http_port=port)
        with pytest.raises(OSError, match=f"cannot bind the HTTP bridge to 127.0.0.1:{port}"):
            await axon.start_async()
    assert not axon.started


async def test_dual_stack_ip_reports_ipv4_peers_plainly() -> None:
    try:
        async with serve_bridge(dummy_forward, ip="[::]") as b:
            headers, body = b.client.prepare(Dummy(input=3))
            headers["bt_header_dendrite_signature"] = ""
            response = await b.client.send("/Dummy", headers, body)
    except OSError as e:  # pragma: no cover - hosts without IPv6
        pytest.skip(f"no dual-stack socket here: {e}")
    assert response.status == 401
    assert response.headers["bt_header_dendrite_ip"] == "127.0.0.1"


def test_axon_in_its_own_thread_serves_http() -> None:
    axon = build_axon(dummy_forward, http_port=free_port())
    axon.start()
    try:
        client = LegacyClient(int(axon.http_port), axon.wallet.hotkey.ss58_address)  # only to prepare
        headers, body = client.prepare(Dummy(input=21))
        request = urllib.request.Request(
            f"http://127.0.0.1:{axon.http_port}/Dummy",
            data=body.encode(),
            method="POST",
            headers={**headers, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read())["output"] == 42
            assert response.headers["bt_header_axon_status_message"] == "Success"
    finally:
        axon.stop()


def test_fastapi_threaded_server_runs_a_toy_app_in_its_own_thread() -> None:
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict:
        return {"hello": "world"}

    port = free_port()
    server = FastAPIThreadedServer(
        config=uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning", lifespan="off")
    )
    assert not server.is_running
    server.start()
    try:
        assert server.is_running
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=10) as response:
            assert json.loads(response.read()) == {"hello": "world"}
    finally:
        server.stop()
    assert not server.is_running and server.should_exit
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=2)
    server.install_signal_handlers()  # a no-op, kept from the seed


def test_demo_calls_over_grpc_and_over_the_bridge(tmp_path, monkeypatch) -> None:
    from axon_grpc.cli.demo import run_demo
    from axon_grpc.server.config import parse_config

    monkeypatch.setenv("AXON_GRPC_HOME", str(tmp_path))  # the demo's development hotkey goes here
    config = parse_config(
        [
            "--axon.ip",
            "127.0.0.1",
            "--axon.port",
            str(free_port()),
            "--axon.http_port",
            str(free_port()),
            "--wallet.path",
            str(tmp_path / "wallets"),
        ]
    )
    lines: list[str] = []
    assert run_demo(config, value=21, out=lines.append) == 0
    assert any(line.startswith("grpc   Dummy(input=21) -> output=42 status=200 'Success'") for line in lines)
    assert any(line.startswith("http   POST /Dummy input=21 -> output=42 status=200 'Success'") for line in lines)


def test_fastapi_threaded_server_run_in_thread_context() -> None:
    app = FastAPI()
    port = free_port()
    server = FastAPIThreadedServer(
        config=uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning", lifespan="off")
    )
    with server.run_in_thread():
        assert server.started
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=10)
        assert caught.value.code == 404
        caught.value.close()
    assert server.should_exit


async def test_create_error_response_and_log_and_handle_error() -> None:
    synapse = Dummy(input=1)
    log_and_handle_error(synapse, BodyHashMismatch("Hash mismatch between header body hash a and parsed body hash b"))
    response = create_error_response(synapse)
    assert response.status_code == 400
    assert json.loads(response.body) == {"message": "Hash mismatch between header body hash a and parsed body hash b"}
    headers = dict(response.headers)
    assert headers["bt_header_axon_status_code"] == "400"
    assert headers["name"] == "Dummy" and headers["bt_header_input_obj_input"] == "MA=="
    failed = log_and_handle_error(Dummy(input=1), RuntimeError("secret"))
    assert failed.axon.status_code == 500 and "secret" not in failed.axon.status_message


def _request(path: str, body: bytes, headers: dict[str, str]) -> Request:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": path, "headers": raw, "query_string": b""}, receive)


async def test_verify_body_integrity() -> None:
    axon = build_axon(dummy_forward, http_port=free_port())
    good = Dummy(input=3).body_hash
    payload = {"input": 3, "output": None}
    assert (
        await axon.verify_body_integrity(_request("/Dummy", json.dumps(payload).encode(), {"computed_body_hash": good}))
        == payload
    )
    with pytest.raises(BodyHashMismatch) as caught:
        await axon.verify_body_integrity(_request("/Dummy", b'{"input": 4}', {"computed_body_hash": good}))
    assert caught.value.status_code == 400
    # neither hash is echoed: the caller has its own, and ours would only cost bytes
    assert (
        caught.value.message == "Hash mismatch: computed_body_hash is not the hash of this body's required_hash_fields"
    )
    with pytest.raises(SynapseParsingError):
        await axon.verify_body_integrity(_request("/Dummy", b"[3]", {"computed_body_hash": good}))
    from fastapi.exceptions import RequestValidationError

    with pytest.raises(RequestValidationError):
        await axon.verify_body_integrity(_request("/Dummy", b"nope", {"computed_body_hash": good}))


async def test_middleware_stages_delegate_to_the_pipeline(bridged: Bridged) -> None:
    middleware = AxonMiddleware(bridged.axon.app, bridged.axon)
    headers, body = bridged.client.prepare(Dummy(input=4))
    synapse = await middleware.preprocess(_request("/Dummy", body.encode(), headers))
    assert isinstance(synapse, Dummy) and synapse.axon.signature
    await middleware.blacklist(synapse)
    await middleware.verify(synapse)
    assert await middleware.priority(synapse) == 0.0
    result = await middleware.run(synapse, json.loads(body))
    assert result.output == 8 and result.axon.status_code == 200
    response = middleware.synapse_to_response(result)
    assert response.status_code == 200 and json.loads(response.body)["output"] == 8
    # As the SDK's stages: a refusal is raised and written to synapse.axon.
    stale = await middleware.preprocess(_request("/Dummy", body.encode(), headers))
    with pytest.raises(NotVerifiedException):
        await middleware.verify(stale)  # the same nonce again
    assert stale.axon.status_code == 401 and "newer one" in stale.axon.status_message


class Optionals(Synapse):
    """A synapse whose every field has a default (no input_obj header)."""

    text: Optional[str] = None
    values: list[int] = []

    required_hash_fields = ("text", "values")


async def test_hash_covers_several_fields_and_lists() -> None:
    def echo(synapse: Optionals) -> Optionals:
        synapse.values = [v * 2 for v in synapse.values]
        return synapse

    async with serve_bridge(echo) as b:
        response = await b.client.call(Optionals(text="héllo", values=[1, 2]))
        assert response.status == 200, response.text
        assert response.json["values"] == [2, 4] and response.json["text"] == "héllo"
        assert not [n for n in response.header_names if n.startswith("bt_header_input_obj_")]
        assert response.headers["computed_body_hash"] == Optionals(text="héllo", values=[2, 4]).body_hash


async def test_many_concurrent_calls(bridged: Bridged) -> None:
    inputs = [i for i in range(50) if i != 13]  # the fixture's blacklist refuses input 13
    responses = await asyncio.gather(*(bridged.client.call(Dummy(input=i)) for i in inputs))
    assert [r.json["output"] for r in responses] == [2 * i for i in inputs]


async def test_btauth_signed_request_over_http(bridged: Bridged) -> None:
    """SDK 11's btauth/1 over the bridge: the signature covers method, path and the raw body."""
    btauth = pytest.importorskip("axon_grpc.auth.btauth")
    key = Keypair.generate()
    body = json.dumps({"input": 3}).encode()
    headers = btauth.sign_headers(key, method="POST", path="/Dummy", body=body, receiver=bridged.hotkey)
    response = await bridged.client.send("/Dummy", headers, body)
    assert response.status == 200, response.text
    assert response.json == {"input": 3, "output": 6}  # a btauth caller gets the user fields
    assert response.headers["bt_header_axon_status_code"] == "200"
    replayed = await bridged.client.send("/Dummy", headers, body)
    assert replayed.status == 401 and replayed.message.startswith("Not Verified with error: ")
    signed = btauth.sign_headers(key, method="POST", path="/Dummy", body=body, receiver=bridged.hotkey)
    tampered = await bridged.client.send("/Dummy", signed, json.dumps({"input": 4}).encode())
    assert tampered.status == 401 and tampered.message.startswith("Not Verified with error: ")
    wrong_path = btauth.sign_headers(key, method="POST", path="/Other", body=body, receiver=bridged.hotkey)
    assert (await bridged.client.send("/Dummy", wrong_path, body)).status == 401
    await bridged.assert_still_serving()


async def test_the_app_alone_serves_the_synapse_routes() -> None:
    """``axon.app`` without the middleware in front (as under a test client) answers the same."""
    import httpx

    axon = build_axon(dummy_forward, http_port=free_port())
    await axon.start_async()
    try:
        client = LegacyClient(int(axon.http_port), axon.wallet.hotkey.ss58_address)
        headers, body = client.prepare(Dummy(input=3))
        transport = httpx.ASGITransport(app=axon.app, client=("127.0.0.1", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            response = await http.post("/Dummy", headers=headers, content=body)
            assert response.status_code == 200, response.text
            assert response.json()["output"] == 6
            assert response.headers["bt_header_axon_status_message"] == "Success"
            again = await http.post("/Dummy", headers=headers, content=body)
            assert again.status_code == 401
            missing = await http.get("/Nope")
            assert missing.status_code == 404 and missing.json()["message"].startswith("Synapse name 'Nope' not found")
    finally:
        await axon.stop_async(grace=None)


def test_bridge_socket_is_tcp_so_responses_are_not_delayed_by_nagle() -> None:
    import socket

    from bridge.server import bind_socket

    sock = bind_socket("127.0.0.1", free_port())
    try:
        assert sock.proto == socket.IPPROTO_TCP  # asyncio then sets TCP_NODELAY per connection
    finally:
        sock.close()
