"""A real ``axon-grpc serve`` (Envoy via pyvoy) on loopback: one port, both protocols.

The project's Dendrite calls over gRPC, a legacy-protocol client (signed as an SDK 10.5
dendrite signs) over HTTP/1.1, both to the same port; streaming on both; health and
reflection; a SIGTERM drain with calls in flight on both protocols.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from axon_grpc import Dendrite
from axon_grpc.auth.keys import Keypair
from axon_grpc.info import AxonInfo

from ..support import Dummy, settles_to
from ..test_bridge_client import LegacyClient
from ..test_deadline_endings import CALLS, calls_past_the_deadline, counted
from ..test_metrics import scrape, value
from .axon_app import Nap, Story
from .support import ROOT, environment, requires_pyvoy, start_server, stop

pytestmark = [requires_pyvoy]

SEED = "0x" + "42" * 32
AXON_HOTKEY = Keypair.create_from_seed(SEED).ss58_address


def serve() -> tuple[subprocess.Popen[str], int]:
    """``axon-grpc serve`` on a port it picks; the process and the port it printed."""
    command = [
        sys.executable,
        "-m",
        "axon_grpc",
        "serve",
        "tests.edge.axon_app:build_axon",
        "--server",
        "envoy",
        "--axon.ip",
        "127.0.0.1",
        "--axon.port",
        "0",
        "--grace",
        "5",
    ]
    served = start_server(command, environment(EDGE_TEST_AXON_SEED=SEED, AXON_GRPC_HOME=str(ROOT / ".pytest_cache")))
    return served.process, served.port


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    process, port = serve()
    try:
        yield port
    finally:
        assert stop(process) == 0


def info(port: int) -> AxonInfo:
    return AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=AXON_HOTKEY, coldkey="")


async def test_grpc_and_legacy_http_on_one_port(port: int) -> None:
    async with Dendrite() as dendrite:
        result = await dendrite.call(info(port), Dummy(input=21), timeout=10, deserialize=False)
    assert (result.output, result.dendrite.status_code) == (42, 200)
    assert result.axon.hotkey == AXON_HOTKEY
    legacy = LegacyClient(port, AXON_HOTKEY)
    try:
        reply = await legacy.call(Dummy(input=5))
        assert reply.status == 200, reply.text
        assert reply.json["output"] == 10
        assert reply.headers["bt_header_axon_status_code"] == "200"
        refused = await legacy.send("/Dummy", {}, "{}")
        assert refused.status == 401
    finally:
        await legacy.close()
    scrape = await asyncio.to_thread(_get, port, "/metrics")  # the same port serves the scrape too
    assert 'axon_build_info{mode="envoy"' in scrape
    assert 'axon_requests_total{scheme="legacy",status_class="2xx",synapse="Dummy",transport="grpc"}' in scrape


def _get(port: int, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        return reply.read().decode()


async def test_unsigned_grpc_call_is_refused(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/axon.v1.Axon/Dummy")(b"", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_streaming_on_both_protocols(port: int) -> None:
    async with Dendrite() as dendrite:
        items = [item async for item in dendrite.call_stream(info(port), Story(prompt="one two"), deserialize=False)]
    assert items[:2] == ["ONE", "TWO"]
    assert items[-1].completion == "ONE TWO" and items[-1].dendrite.status_code == 200
    legacy = LegacyClient(port, AXON_HOTKEY)
    try:
        reply = await legacy.call(Story(prompt="three four"))
        assert reply.status == 200
        assert reply.text == "THREEFOUR"
    finally:
        await legacy.close()


async def test_calls_ended_by_the_callers_deadline_are_counted(port: int) -> None:
    """The adapter's ``grpc-timeout`` timer cancels the call: counted 408 ``deadline``, timed."""
    await calls_past_the_deadline(f"127.0.0.1:{port}", AXON_HOTKEY)
    await asyncio.sleep(0.3)  # the last report follows the client's status
    samples = {}
    for family in text_string_to_metric_families(await asyncio.to_thread(_get, port, "/metrics")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert counted(samples, "grpc") == (CALLS, CALLS, CALLS)


def test_health_and_reflection(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "axon.v1.Axon"):
            assert (
                health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                == health_pb2.HealthCheckResponse.SERVING
            )
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(
            stub.ServerReflectionInfo(
                iter(
                    [
                        reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(file_containing_symbol="axon.v1.Axon"),
                    ]
                ),
                timeout=5,
            )
        )
    assert "axon.v1.Axon" in [s.name for s in answers[0].list_services_response.service]
    from google.protobuf import descriptor_pb2

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in answers[1].file_descriptor_response.file_descriptor_proto
    ]
    methods = {m.name for f in files for s in f.service if s.name == "Axon" for m in s.method}
    assert {"Dummy", "Story", "Nap"} <= methods
    # the service's comment names the contract and its rules (rule R22), through Envoy too
    comments = [loc.leading_comments for f in files for loc in f.source_code_info.location if list(loc.path) == [6, 0]]
    assert comments == [" axon-contract: axon.v1;rules=27 (docs/SPEC.md)\n"]


async def test_sigterm_drains_both_protocols() -> None:
    """SIGTERM: health NOT_SERVING, no new connections, calls in flight on both protocols finish, exit 0."""
    process, port = serve()
    legacy = LegacyClient(port, AXON_HOTKEY)
    try:
        async with Dendrite() as dendrite, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert (
                await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            ).status == health_pb2.HealthCheckResponse.SERVING
            legacy_call = asyncio.ensure_future(legacy.call(Nap(seconds=1.5), timeout=10))
            stream = dendrite.call_stream(info(port), Nap(seconds=1.5), timeout=10, deserialize=False)
            first = await stream.__anext__()
            assert first == "start"

            async def busy() -> float:
                return value((await asyncio.to_thread(scrape, port))[0], "axon_workers_busy")

            await settles_to(busy, 2)  # the legacy request has reached the axon too
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)

            async def serving() -> int:
                return int((await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status)

            await settles_to(serving, health_pb2.HealthCheckResponse.NOT_SERVING)

            async def accepting() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    return False
                return True

            await settles_to(accepting, False)  # the listener no longer accepts
            rest = [item async for item in stream]
            reply = await legacy_call
        assert rest[0] == "end" and rest[-1].dendrite.status_code == 200
        assert (reply.status, reply.text) == (200, "startend")
        assert await asyncio.to_thread(process.wait, 10) == 0
        assert time.monotonic() - started < 5  # within --grace
    finally:
        await legacy.close()
        stop(process)


async def test_sessions_through_envoy(port: int) -> None:
    """axon-session/1 under ``axon-grpc serve``: announced, opened through the ASGI adapter, calls
    by MAC (a replay refused), and the Dendrite's session calls counted under their scheme."""
    from axon_grpc.auth.session_wire import OPEN_METHOD

    from ..session_support import BODY_7, DUMMY, call, opened, session_metadata

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        status, _, _, trailers = await call(channel, OPEN_METHOD, b"\xff", ())
        assert status == grpc.StatusCode.INVALID_ARGUMENT and trailers["axon-sessions"] == "axon-session/1"
        status, _, details, _ = await call(channel, OPEN_METHOD, b"\x0a" + b"\x80\x10" + b"x" * 2048, ())
        assert (status, details) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "A session open has at most 1024 bytes (rule R25)",
        )
        session = await opened(channel, AXON_HOTKEY)
        metadata = session_metadata(session, 1, BODY_7)
        status, reply, _, trailers = await call(channel, DUMMY, BODY_7, metadata)
        assert (status, reply) == (grpc.StatusCode.OK, b"\x08\x07\x10\x0e")
        assert trailers["axon-sessions"] == "axon-session/1"
        status, _, details, _ = await call(channel, DUMMY, BODY_7, metadata)
        assert (status, details) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Session counter already used (rule R27)",
        )
    finally:
        await channel.close()

    async def sessions_served() -> float:
        samples = (await asyncio.to_thread(scrape, port))[0]
        labels = {"synapse": "Dummy", "transport": "grpc", "scheme": "session", "status_class": "2xx"}
        return value(samples, "axon_requests_total", **labels)

    await asyncio.sleep(1.1)  # the scrape is rebuilt at most once a second
    before = await sessions_served()
    async with Dendrite(sessions="required") as dendrite:
        results = await asyncio.gather(*(dendrite.call(info(port), Dummy(input=i), timeout=10) for i in range(20, 40)))
    assert [r.output for r in results] == [2 * i for i in range(20, 40)]
    await settles_to(sessions_served, before + 20)
