"""The gRPC-over-ASGI adapter inside a real Envoy (pyvoy), over a fake pipeline.

grpcio calls the adapter on loopback; the fake pipeline (tests/edge/fake_app.py)
answers by method name, so these tests pin the wire protocol: framing, trailers,
trailers-only refusals, deadlines, streaming, sizes, encodings, health, reflection,
and the legacy HTTP side of the same port.
"""

from __future__ import annotations

import json
from typing import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ..support import settles
from .support import requires_pyvoy, run_pyvoy

pytestmark = requires_pyvoy


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    yield from run_pyvoy("tests.edge.fake_app:app")


@pytest.fixture(scope="module")
def channel(port: int) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel


def method(channel: grpc.Channel, name: str) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(f"/axon.v1.Axon/{name}")


def stats(channel: grpc.Channel) -> dict[str, int]:
    return json.loads(method(channel, "Stats")(b"", timeout=5))  # type: ignore[no-any-return]


def test_unary_reply_and_trailing_metadata(channel: grpc.Channel) -> None:
    reply, call = method(channel, "Echo").with_call(b"\x00hello\xff", timeout=5)
    assert reply == b"\x00hello\xff"
    assert call.code() == grpc.StatusCode.OK
    assert ("bt_header_axon_status_code", "200") in call.trailing_metadata()


def test_refusal_is_trailers_only_with_percent_encoded_message(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        method(channel, "Fail")(b"x", timeout=5)
    error = caught.value
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "Forbidden: caf\u00e9 100%"
    assert ("bt_header_axon_status_code", "403") in error.trailing_metadata()


def test_deadline_cancels_the_call(channel: grpc.Channel) -> None:
    before = stats(channel)["cancelled"]
    with pytest.raises(grpc.RpcError) as caught:
        method(channel, "Slow")(b"5", timeout=0.3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    settles(lambda: stats(channel)["cancelled"], before + 1)  # the server's cancellation lands a moment later


def test_call_carries_peer_headers_and_enforced_deadline(channel: grpc.Channel) -> None:
    info = json.loads(method(channel, "Peer")(b"", timeout=5, metadata=[("bt_header_dendrite_uuid", "u-1")]))
    assert info["ip"] == "127.0.0.1"
    assert info["enforced"] is True and info["deadline"] is True
    assert info["headers"]["bt_header_dendrite_uuid"] == "u-1"
    assert info["path"] == "/axon.v1.Axon/Peer"
    untimed = json.loads(method(channel, "Peer")(b""))
    assert untimed["enforced"] is False and untimed["deadline"] is False


def test_unknown_methods_are_unimplemented(channel: grpc.Channel) -> None:
    for path in ("/axon.v1.Axon/Nope", "/other.Service/Method"):
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(path)(b"", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_server_streaming(channel: grpc.Channel) -> None:
    call = channel.unary_stream("/axon.v1.Axon/Count")(b"4", timeout=5)
    assert list(call) == [b"chunk0", b"chunk1", b"chunk2", b"chunk3", b"final"]
    assert call.code() == grpc.StatusCode.OK
    assert ("bt_header_axon_status_code", "200") in call.trailing_metadata()


def test_client_leaving_a_stream_closes_it(channel: grpc.Channel) -> None:
    before = stats(channel)["stream_closed"]
    call = channel.unary_stream("/axon.v1.Axon/Count")(b"100000", timeout=10)
    assert next(call) == b"chunk0"
    call.cancel()
    settles(lambda: stats(channel)["stream_closed"], before + 1)


def test_message_over_the_limit_is_resource_exhausted(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        method(channel, "Echo")(b"x" * (100 * 1024), timeout=5)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit is 65536 bytes" in (caught.value.details() or "")
    assert method(channel, "Echo")(b"x" * 60000, timeout=5) == b"x" * 60000


def test_compressed_requests_are_unimplemented(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        method(channel, "Echo")(b"hello", timeout=5, compression=grpc.Compression.Gzip)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_health_check(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "fake.Service"):
        assert (
            stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


def test_reflection_answers_each_request_as_it_arrives(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health"),
        reflection_pb2.ServerReflectionRequest(file_by_filename="missing.proto"),
    ]
    answers = list(stub.ServerReflectionInfo(iter(requests), timeout=5))
    assert [s.name for s in answers[0].list_services_response.service] == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    assert answers[1].file_descriptor_response.file_descriptor_proto
    assert answers[2].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_legacy_http_on_the_same_port(port: int) -> None:
    reply = httpx.post(f"http://127.0.0.1:{port}/Dummy", json={"input": 1}, timeout=5)
    assert reply.status_code == 200
    assert reply.json() == {"path": "/Dummy", "method": "POST", "size": len(b'{"input":1}')}
    assert reply.http_version == "HTTP/1.1"
