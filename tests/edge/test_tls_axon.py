"""The Dendrite over TLS to a real ``axon-grpc serve --tls-cert/--tls-key`` (and mTLS).

The test makes its certificates (openssl CLI): a CA, a server certificate for 127.0.0.1
and a client certificate it signed, and a self-signed certificate that is not the
server's. The TLS axon publishes its certificate with ``axon.serve(netuid,
certificate=...)`` in a local registry; the Dendrite pins it from there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from axon_grpc import Dendrite
from axon_grpc.auth.keys import Keypair
from axon_grpc.info import AxonInfo
from axon_grpc.registry import REGISTRY_ENV, LocalRegistry

from ..support import Dummy
from .certs import OPENSSL_MISSING, Pki, make_pki
from .support import environment, requires_pyvoy, start_server, stop

pytestmark = [requires_pyvoy]

SEED = "0x" + "43" * 32
AXON_HOTKEY = Keypair.create_from_seed(SEED).ss58_address
NETUID = 12


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if OPENSSL_MISSING:
        pytest.skip(OPENSSL_MISSING)
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stranger(pki: Pki) -> Path:
    """A self-signed certificate for 127.0.0.1 that is not the server's."""
    folder = pki.ca.parent
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "stranger.key",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "1",
            "-out",
            "stranger.pem",
        ],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return folder / "stranger.pem"


def serve(*flags: str, **env: str) -> tuple[subprocess.Popen[str], int]:
    """``axon-grpc serve`` on ``--axon.port 0``; the port it printed, which the registry records."""
    command = [
        sys.executable,
        "-m",
        "axon_grpc",
        "serve",
        "tests.edge.axon_app:build_published_axon",
        "--axon.ip",
        "127.0.0.1",
        "--axon.port",
        "0",
        "--grace",
        "2",
        *flags,
    ]
    served = start_server(command, environment(EDGE_TEST_AXON_SEED=SEED, EDGE_TEST_NETUID=str(NETUID), **env))
    entries = LocalRegistry(env[REGISTRY_ENV]).entries(NETUID)
    assert [entry.info.port for entry in entries] == [served.port], "the axon's registry record is not the edge port"
    return served.process, served.port


@pytest.fixture(scope="module")
def tls_axon(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    registry = str(tmp_path_factory.mktemp("registry") / "registry.sqlite")
    process, port = serve(
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        EDGE_TEST_CERTIFICATE=str(pki.server_cert),
        **{REGISTRY_ENV: registry},
    )
    try:
        yield port, registry
    finally:
        assert stop(process) == 0


def info(port: int) -> AxonInfo:
    return AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=AXON_HOTKEY, coldkey="")


async def test_the_registry_records_the_edge_port_and_the_certificate(tls_axon: tuple[int, str], pki: Pki) -> None:
    port, registry = tls_axon
    (entry,) = LocalRegistry(registry).entries(NETUID)
    assert entry.info.port == port and entry.info.ip == "127.0.0.1" and entry.info.hotkey == AXON_HOTKEY
    assert entry.certificate == pki.server_cert.read_text()
    async with Dendrite(tls_ca=pki.ca) as dendrite:
        result = await dendrite.call(info(port), Dummy(input=1), timeout=10, deserialize=False)
    assert result.axon.port == port  # the axon's own answer names the edge's port too


async def test_dendrite_trusting_the_ca(tls_axon: tuple[int, str], pki: Pki) -> None:
    port, _ = tls_axon
    async with Dendrite(tls_ca=pki.ca.read_text()) as dendrite:
        result = await dendrite.call(info(port), Dummy(input=21), timeout=10, deserialize=False)
    assert (result.dendrite.status_code, result.output) == (200, 42)


async def test_dendrite_pins_the_published_certificate(
    tls_axon: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, registry = tls_axon
    monkeypatch.setenv(REGISTRY_ENV, registry)
    async with Dendrite() as dendrite:
        (result,) = await dendrite.forward(synapse=Dummy(input=4), netuid=NETUID, deserialize=False)
    assert (result.dendrite.status_code, result.output) == (200, 8)


async def test_a_wrong_pin_is_refused(tls_axon: tuple[int, str], pki: Pki, stranger: Path) -> None:
    port, _ = tls_axon
    # the stranger's certificate pinned; the CA would have trusted the server, the pin wins
    async with Dendrite(tls_ca=pki.ca, certificates={AXON_HOTKEY: stranger}) as dendrite:
        result = await dendrite.call(info(port), Dummy(input=1), timeout=10, deserialize=False)
    assert result.dendrite.status_code == 503
    assert result.dendrite.status_message.startswith(f"TLS handshake with 127.0.0.1:{port} failed")
    assert result.output is None


async def test_cleartext_dendrite_cannot_call_a_tls_axon(tls_axon: tuple[int, str]) -> None:
    port, _ = tls_axon
    async with Dendrite() as dendrite:
        result = await dendrite.call(info(port), Dummy(input=1), timeout=5, deserialize=False)
    assert result.dendrite.status_code != 200 and result.output is None


async def test_mtls_with_the_dendrite_client_certificate(pki: Pki, tmp_path: Path) -> None:
    registry = str(tmp_path / "registry.sqlite")
    process, port = serve(
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        "--tls-ca-cert",
        str(pki.ca),
        **{REGISTRY_ENV: registry},
    )
    try:
        async with Dendrite(tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key) as dendrite:
            result = await dendrite.call(info(port), Dummy(input=5), timeout=10, deserialize=False)
        assert (result.dendrite.status_code, result.output) == (200, 10)
        async with Dendrite(tls_ca=pki.ca) as dendrite:  # no client certificate
            refused = await dendrite.call(info(port), Dummy(input=5), timeout=10, deserialize=False)
        assert refused.dendrite.status_code == 503 and refused.output is None
    finally:
        assert stop(process) == 0
