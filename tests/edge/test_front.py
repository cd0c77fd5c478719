"""``axon-grpc front``'s Envoy configuration: what it retries, how it judges hosts, its limits; Envoy accepts it.

The front running over real hosts (network namespaces) is tested in tests/test_fleet.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from axon_grpc.edge.config import EdgeLimits, TlsFiles, parse_cidr, trust_fronts
from axon_grpc.edge.front import RETRY_ON, FrontSettings, envoy_binary, front_config, parse_host_port

from .certs import OPENSSL_MISSING, make_pki
from .support import ROOT, environment, requires_pyvoy


def settings(**overrides: object) -> FrontSettings:
    values: dict[str, object] = {"backends": [("10.0.0.11", 8091), ("10.0.0.12", 8091)], "port": 8091}
    values.update(overrides)
    return FrontSettings(**values)  # type: ignore[arg-type]


def only(items: list[dict[str, object]]) -> dict[str, object]:
    assert len(items) == 1
    return items[0]


def test_only_requests_that_never_reached_a_host_are_retried() -> None:
    config = front_config(settings())
    listener = only(config["static_resources"]["listeners"])
    hcm = only(only(listener["filter_chains"])["filters"])["typed_config"]
    route = only(only(hcm["route_config"]["virtual_hosts"])["routes"])["route"]
    assert set(route["retry_policy"]["retry_on"].split(",")) == {
        "connect-failure",
        "refused-stream",
        "reset-before-request",
    }
    assert RETRY_ON == route["retry_policy"]["retry_on"]
    for unsafe in ("5xx", "gateway-error", "reset", "unavailable", "retriable-status-codes"):
        assert unsafe not in route["retry_policy"]["retry_on"].split(",")
    assert route["retry_policy"]["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"


def test_hosts_are_judged_by_grpc_health_and_their_own_failures_not_by_their_answers() -> None:
    cluster = only(front_config(settings())["static_resources"]["clusters"])
    check = only(cluster["health_checks"])
    assert check["grpc_health_check"] == {"service_name": ""}
    assert (check["interval"], check["timeout"], check["unhealthy_threshold"]) == ("1s", "1s", 1)
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {"value": 0}
    outlier = cluster["outlier_detection"]
    assert outlier["split_external_local_origin_errors"] is True
    assert outlier["enforcing_consecutive_local_origin_failure"] == 100
    # A 503 from a host (its nonce store is down, as it is for every host) ejects nothing.
    assert outlier["enforcing_consecutive_5xx"] == outlier["enforcing_consecutive_gateway_failure"] == 0
    endpoints = only(cluster["load_assignment"]["endpoints"])["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["address"] for e in endpoints] == ["10.0.0.11", "10.0.0.12"]
    protocols = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert set(protocols["use_downstream_protocol_config"]) == {"http_protocol_options", "http2_protocol_options"}


def test_the_front_keeps_the_edge_limits_of_serve() -> None:
    limits = EdgeLimits(max_request_headers_kb=16, http2_max_concurrent_streams=50, max_connections=1000)
    config = front_config(settings(limits=limits))
    listener = only(config["static_resources"]["listeners"])
    hcm = only(only(listener["filter_chains"])["filters"])["typed_config"]
    assert hcm["max_request_headers_kb"] == 16
    assert hcm["use_remote_address"] is True  # the caller's address is appended to x-forwarded-for
    assert hcm["http2_protocol_options"]["max_concurrent_streams"] == 50
    assert listener["per_connection_buffer_limit_bytes"] == limits.per_connection_buffer_bytes
    assert config["overload_manager"]["resource_monitors"][1]["typed_config"]["max_active_downstream_connections"] == (
        limits.connection_limit()
    )
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_backends_trust_x_forwarded_for_from_the_front_only() -> None:
    config = {
        "static_resources": {
            "listeners": [json.loads(json.dumps(front_config(settings())["static_resources"]["listeners"][0]))]
        }
    }
    trust_fronts(config, ["10.0.0.2/32", "fd00::/64"])
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["use_remote_address"] is False
    detection = only(hcm["original_ip_detection_extensions"])["typed_config"]
    assert detection["xff_trusted_cidrs"]["cidrs"] == [
        {"address_prefix": "10.0.0.2", "prefix_len": 32},
        {"address_prefix": "fd00::", "prefix_len": 64},
    ]
    assert "xff_num_trusted_hops" not in detection
    with pytest.raises(ValueError):
        parse_cidr("10.0.0.300/8")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["front", "--print-config"], "at least one --backend"),
        (["front", "--backend", "10.0.0.1:http", "--print-config"], "not a port"),
        (["front", "--backend", "10.0.0.1", "--print-config"], "expected HOST:PORT"),
        (["front", "--backend", "10.0.0.1:8091", "--tls-cert", "/nonexistent.pem", "--print-config"], "go together"),
        (["serve", "tests.edge.axon_app:build_axon", "--trusted-front", "ten.0.0.2", "--print-envoy-config"], "ten"),
    ],
)
def test_bad_arguments_fail_in_one_line(argv: list[str], words: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "axon_grpc", *argv],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=environment(EDGE_TEST_AXON_SEED="0x" + "11" * 32),
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


def test_host_port_forms() -> None:
    assert parse_host_port("[::1]:8091") == ("::1", 8091)
    assert parse_host_port("10.0.0.1:0") == ("10.0.0.1", 0)
    with pytest.raises(ValueError):
        parse_host_port("10.0.0.1:70000")


@requires_pyvoy
@pytest.mark.skipif(OPENSSL_MISSING is not None, reason=str(OPENSSL_MISSING))
def test_envoy_accepts_the_configuration_with_tls_and_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = TlsFiles(str(pki.server_cert), str(pki.server_key), str(pki.ca))
    for given in (settings(), settings(tls=tls, address="::", port=0)):
        path = tmp_path / "front.json"
        path.write_text(json.dumps(front_config(given)))
        result = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "OK" in result.stdout + result.stderr


@requires_pyvoy
@pytest.mark.skipif(OPENSSL_MISSING is not None, reason=str(OPENSSL_MISSING))
async def test_a_dendrite_calls_through_a_tls_front_to_a_backend(tmp_path: Path) -> None:
    """On loopback: ``axon-grpc serve`` behind ``axon-grpc front --tls-cert``; the Dendrite pins the CA."""
    from axon_grpc import Dendrite
    from axon_grpc.auth.keys import Keypair
    from axon_grpc.info import AxonInfo

    from ..support import Dummy
    from .support import start_on_a_picked_port, start_server, stop

    pki = make_pki(tmp_path)
    seed = "0x" + "46" * 32
    env = environment(EDGE_TEST_AXON_SEED=seed)
    serve_flags = ["--axon.ip", "127.0.0.1", "--axon.port", "0", "--trusted-front", "127.0.0.1/32"]
    served = start_server(
        [sys.executable, "-m", "axon_grpc", "serve", "tests.edge.axon_app:build_axon", *serve_flags, "--grace", "1"],
        env,
        timeout=60,
    )
    backend, backend_port = served.process, served.port
    tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]

    def front_command(port: int) -> list[str]:  # Envoy's listener takes a port number only
        front_flags = ["--listen", f"127.0.0.1:{port}", "--backend", f"127.0.0.1:{backend_port}", *tls]
        return [sys.executable, "-m", "axon_grpc", "front", *front_flags, "--edge.threads", "1"]

    front: subprocess.Popen[bytes] | None = None
    try:
        front, front_port = start_on_a_picked_port(front_command, env)
        hotkey = Keypair.create_from_seed(seed).ss58_address
        info = AxonInfo(version=0, ip="127.0.0.1", port=front_port, ip_type=4, hotkey=hotkey, coldkey="")
        async with Dendrite(tls_ca=pki.ca) as dendrite:
            passed_by = time.monotonic() + 30  # until the front's first health check passed
            while True:
                result = await dendrite.call(info, Dummy(input=21), timeout=5, deserialize=False)
                if result.dendrite.status_code == 200 or time.monotonic() > passed_by:
                    break
                await asyncio.sleep(0.1)
        assert (result.dendrite.status_code, result.output) == (200, 42)
        async with Dendrite() as plain:  # cleartext to a TLS front: no answer
            refused = await plain.call(info, Dummy(input=1), timeout=3, deserialize=False)
        assert refused.dendrite.status_code != 200
    finally:
        assert front is None or stop(front) in (0, -15)
        assert stop(backend) == 0
