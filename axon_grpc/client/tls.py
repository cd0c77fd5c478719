"""TLS for the Dendrite: which axons it calls over TLS, whom it trusts, and what it pins.

An axon served with ``axon-grpc serve --tls-cert ... --tls-key ...`` speaks TLS on its
port. The Dendrite calls it over TLS when it knows something to trust for it:

- ``tls_ca``: a CA bundle (PEM text, bytes or a file path) trusted for every axon; every
  call then goes over TLS;
- a certificate pinned for one axon (``certificates={hotkey or "ip:port": pem}``, or the
  certificate the axon published with ``axon.serve(netuid, certificate=pem)`` in the local
  registry): only that certificate is trusted for that axon, as the channel's one root,
  so a server holding another key (even one signed by a trusted CA) is refused during
  the handshake. A pinned certificate may be self-signed or issued by a CA.

The certificate must name the address the Dendrite dials (``subjectAltName=IP:...``), as
TLS checks it. ``tls_cert``/``tls_key`` add a client certificate for axons that require
one (``--tls-ca-cert``, mTLS). Axons with nothing to trust are called in cleartext.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Union

import grpc

from axon_grpc.info import AxonInfo

#: PEM text, PEM bytes, or the path of a PEM file.
PemSource = Union[str, bytes, "os.PathLike[str]"]

_PEM_BEGIN = b"-----BEGIN "

#: What a failed handshake's details contain (gRPC core's wording, BoringSSL's codes).
_HANDSHAKE_MARKERS = ("handshake failed", "CERTIFICATE_VERIFY_FAILED", "TSI_PROTOCOL_FAILURE", "SSL_ERROR")


def read_pem(source: PemSource) -> bytes:
    """The PEM bytes of ``source``: PEM text or bytes as given, else the file it names."""
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, str) and source.lstrip().startswith("-----BEGIN "):
        data = source.encode()
    else:
        with open(os.fspath(source), "rb") as f:
            data = f.read()
    if _PEM_BEGIN not in data:
        raise ValueError("not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')")
    return data


def is_pem(value: object) -> bool:
    """True for PEM text or bytes (what a published certificate is when it can be pinned)."""
    if isinstance(value, str):
        return "-----BEGIN " in value
    if isinstance(value, (bytes, bytearray)):
        return _PEM_BEGIN in value
    return False


@dataclass
class ClientTls:
    """What a Dendrite trusts, per axon; builds each channel's credentials."""

    #: Roots trusted for every axon (PEM), or None.
    ca: bytes | None = None
    #: The client certificate chain and key (PEM) for axons that require one, or None.
    cert: bytes | None = None
    key: bytes | None = None
    #: Pinned certificates (PEM) by axon hotkey or ``ip:port``.
    pins: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        ca: PemSource | None = None,
        cert: PemSource | None = None,
        key: PemSource | None = None,
        certificates: Mapping[str, PemSource] | None = None,
    ) -> ClientTls:
        if (cert is None) != (key is None):
            raise ValueError("tls_cert and tls_key go together")
        tls = cls(
            read_pem(ca) if ca is not None else None,
            read_pem(cert) if cert is not None else None,
            read_pem(key) if key is not None else None,
        )
        for axon, certificate in (certificates or {}).items():
            tls.pin(axon, certificate)
        return tls

    def pin(self, axon: str, certificate: PemSource) -> None:
        """Trust only ``certificate`` for ``axon`` (its hotkey, or ``ip:port``)."""
        self.pins[axon] = read_pem(certificate)

    def roots(self, info: AxonInfo) -> bytes | None:
        """The roots trusted for ``info``'s axon: its pin, else the CA; None for cleartext."""
        return self.pins.get(info.hotkey) or self.pins.get(info.ip_str()) or self.ca

    def credentials(self, roots: bytes) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=roots, private_key=self.key, certificate_chain=self.cert)

    @staticmethod
    def refused(error: grpc.aio.AioRpcError) -> bool:
        """True when a TLS call failed in the handshake (an untrusted or unpinned certificate)."""
        details = error.details() or ""
        return error.code() is grpc.StatusCode.UNAVAILABLE and any(m in details for m in _HANDSHAKE_MARKERS)


__all__ = ["ClientTls", "PemSource", "is_pem", "read_pem"]
