"""The Dendrite's TLS settings without a server: PEM sources, what is trusted per axon."""

from __future__ import annotations

from pathlib import Path

import pytest

from axon_grpc import Dendrite
from axon_grpc.client.tls import ClientTls, is_pem, read_pem
from axon_grpc.info import AxonInfo
from axon_grpc.registry import LocalRegistry

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
OTHER = PEM.replace("MIIB", "MIIC")


def info(hotkey: str = "5Axon", port: int = 8091) -> AxonInfo:
    return AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=hotkey, coldkey="")


def test_read_pem_takes_text_bytes_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text(PEM)
    assert read_pem(PEM) == read_pem(PEM.encode()) == read_pem(path) == read_pem(str(path)) == PEM.encode()
    with pytest.raises(ValueError, match="not a PEM certificate"):
        read_pem(b"hello")
    assert is_pem(PEM) and is_pem(PEM.encode()) and not is_pem("?FAKE_ALICE_CERT") and not is_pem(None)


def test_a_pin_wins_over_the_ca_and_cleartext_without_either() -> None:
    tls = ClientTls.build(certificates={"5Axon": PEM, "127.0.0.1:9000": OTHER})
    assert tls.roots(info()) == PEM.encode()
    assert tls.roots(info("5Other", 9000)) == OTHER.encode()
    assert tls.roots(info("5Other")) is None  # nothing to trust: cleartext
    assert ClientTls.build(ca=OTHER, certificates={"5Axon": PEM}).roots(info("5Other")) == OTHER.encode()
    with pytest.raises(ValueError, match="go together"):
        ClientTls.build(cert=PEM)


def test_forward_by_netuid_pins_the_published_pem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = LocalRegistry(tmp_path / "registry.sqlite")
    registry.register(1, info("5Pem"), certificate=PEM.encode())  # PEM bytes are kept as text
    registry.register(1, info("5Chain", 8092), certificate="?FAKE_ALICE_CERT")  # the SDK's chain form: not pinned
    assert [e.certificate for e in registry.entries(1)] == ["?FAKE_ALICE_CERT", PEM]
    monkeypatch.setenv("AXON_GRPC_REGISTRY", str(registry.path))
    dendrite = Dendrite(certificates={"5Chain": OTHER})
    assert [i.hotkey for i in dendrite._resolve_pinned(1)] == ["5Chain", "5Pem"]
    assert dendrite.tls.pins == {"5Chain": OTHER.encode(), "5Pem": PEM.encode()}
