"""serve(): Envoy processes with the edge limits, TLS, mTLS and a SIGTERM drain (fake pipeline)."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..support import settles
from .certs import OPENSSL_MISSING, Pki, make_pki
from .support import environment, requires_pyvoy, start_server, stop

pytestmark = requires_pyvoy


def start(*tls: Path, workers: int = 1, grace: float = 5.0) -> tuple[subprocess.Popen[str], int]:
    """serve() on a port it picks; the process and the port it printed."""
    served = start_server(
        [sys.executable, "-m", "tests.edge.serve_fake", "0", *map(str, tls)],
        environment(EDGE_TEST_WORKERS=str(workers), EDGE_TEST_GRACE=str(grace)),
    )
    return served.process, served.port


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if OPENSSL_MISSING:
        pytest.skip(OPENSSL_MISSING)
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def cleartext() -> Iterator[int]:
    process, port = start()
    try:
        yield port
    finally:
        stop(process)


def echo(channel: grpc.Channel) -> bytes:
    return channel.unary_unary("/axon.v1.Axon/Echo")(b"hi", timeout=5)  # type: ignore[no-any-return]


def test_tls_serves_grpc_and_http_on_one_port(pki: Pki) -> None:
    process, port = start(pki.server_cert, pki.server_key)
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            assert echo(channel) == b"hi"
        reply = httpx.post(
            f"https://127.0.0.1:{port}/Dummy",
            content=b"{}",
            verify=ssl.create_default_context(cafile=str(pki.ca)),
            timeout=5,
        )
        assert reply.status_code == 200 and reply.json()["path"] == "/Dummy"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain, pytest.raises(grpc.RpcError):
            echo(plain)  # cleartext is not served beside TLS
    finally:
        assert stop(process) == 0


def test_mtls_requires_a_client_certificate(pki: Pki) -> None:
    process, port = start(pki.server_cert, pki.server_key, pki.ca)
    try:
        root = pki.ca.read_bytes()
        with_cert = grpc.ssl_channel_credentials(root, pki.client_key.read_bytes(), pki.client_cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", with_cert) as channel:
            assert echo(channel) == b"hi"
        without = grpc.ssl_channel_credentials(root)
        with grpc.secure_channel(f"127.0.0.1:{port}", without) as channel, pytest.raises(grpc.RpcError) as caught:
            echo(channel)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(httpx.HTTPError):
            httpx.post(
                f"https://127.0.0.1:{port}/Dummy",
                content=b"{}",
                verify=ssl.create_default_context(cafile=str(pki.ca)),
                timeout=5,
            )
    finally:
        stop(process)


def test_sigterm_drains_calls_in_flight_on_both_protocols() -> None:
    grace = 30.0  # a drain that waits it out, or cuts the calls, fails below; a loaded machine does not
    process, port = start(grace=grace)
    results: dict[str, object] = {}
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

        def grpc_call() -> None:
            results["grpc"] = channel.unary_unary("/axon.v1.Axon/Slow")(b"3", timeout=20)

        def http_stream() -> None:  # a legacy-side request that is still sending its body
            def body() -> Iterator[bytes]:
                for _ in range(3):
                    yield b"x" * 10
                    time.sleep(1.0)

            results["http"] = httpx.post(f"http://127.0.0.1:{port}/Dummy", content=body(), timeout=20).json()

        threads = [threading.Thread(target=grpc_call), threading.Thread(target=http_stream)]
        for thread in threads:
            thread.start()
        settles(lambda: started(channel), (1, 1))  # both calls are in the server
        assert [thread.is_alive() for thread in threads] == [True, True]
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        settles(lambda: accepting(port), False)  # the listener closes while the calls drain
        for thread in threads:
            thread.join(grace)
        assert results["grpc"] == b"slept"
        assert results["http"] == {"path": "/Dummy", "method": "POST", "size": 30}
        assert process.wait(grace) == 0
        assert time.monotonic() - began < grace
        channel.close()
    finally:
        stop(process)


def started(channel: grpc.Channel) -> tuple[int, int]:
    """How many Slow gRPC calls and legacy requests the fake app has begun."""
    stats = json.loads(channel.unary_unary("/axon.v1.Axon/Stats")(b"", timeout=5))
    return stats["slow_started"], stats["legacy_started"]


def accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


def test_two_envoy_processes_share_the_port() -> None:
    process, port = start(workers=2)
    try:
        pids = set()
        deadline = time.monotonic() + 20  # the second process may still be starting
        while time.monotonic() < deadline:  # a new connection each time: the kernel spreads them
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                pids.add(channel.unary_unary("/axon.v1.Axon/Pid")(b"", timeout=5))
            if len(pids) == 2:
                break
        assert len(pids) == 2
    finally:
        assert stop(process) == 0
