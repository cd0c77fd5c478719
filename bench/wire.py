"""Signed requests exactly as real clients send them, built cheaply for load generation.

- gRPC: the request message bytes and the metadata of :class:`axon_grpc.client.dendrite.Dendrite`
  (legacy scheme): ``name``, ``timeout``, ``computed_body_hash`` (SHA3-256 of the message
  bytes), ``bt_header_dendrite_{hotkey,nonce,uuid,version,signature,ip}`` and
  ``bt_header_dendrite_crypto``; the signature is sr25519 over
  ``{nonce}.{hotkey}.{axon_hotkey}.{uuid}.{body_hash}`` with a fresh ``time.time_ns()`` nonce.
- HTTP: the request of a Bittensor SDK 10.5 dendrite (PROTOCOL.md, and
  ``tests/data/conformance/request_dummy_input3.json``): ``synapse.to_headers()`` plus the transport
  headers aiohttp adds, and the JSON of ``synapse.model_dump()`` as the body. The first
  request of a client is built from a real :class:`~axon_grpc.synapse.Synapse`; later ones
  replace the nonce and the signature (fixed widths: 19 digits, ``0x`` + 128 hex) in those
  bytes, so each request is signed afresh but costs the generator little besides the
  signature itself.

Nonces strictly increase per ``{hotkey}:{uuid}``: give every concurrent client loop its
own uuid (one uuid per in-flight request), as the server refuses a nonce not newer than
the last one it accepted for that key.
"""

from __future__ import annotations

import json
import time
import uuid as uuid_lib

from axon_grpc.auth.keys import Keypair
from axon_grpc.auth.legacy import CRYPTO_HEADER, PROTOCOL_VERSION, grpc_body_hash
from axon_grpc.cli.demo import Dummy
from axon_grpc.schema import schema_for
from axon_grpc.server.call import Call
from axon_grpc.synapse import DENDRITE_PREFIX, TerminalInfo
from axon_grpc.transports.grpc_codec import GRPC_CODEC

#: The synapse every target serves, and the request sent: ``Dummy(input=3)``.
SYNAPSE_NAME = "Dummy"
REQUEST_INPUT = 3
GRPC_METHOD = f"/axon.v1.Axon/{SYNAPSE_NAME}"
HTTP_PATH = f"/{SYNAPSE_NAME}"
#: What aiohttp (the legacy dendrite's HTTP client) adds after the synapse headers.
_AIOHTTP_TAIL = (("Accept", "*/*"), ("Accept-Encoding", "gzip, deflate"), ("User-Agent", "Python/3.11 aiohttp/3.14.5"))


def new_uuid() -> str:
    """A dendrite uuid, as ``Dendrite`` makes one (``uuid1``)."""
    return str(uuid_lib.uuid1())


class NonceClock:
    """``time.time_ns()``, forced strictly increasing within one client."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        now = time.time_ns()
        if now <= self.last:
            now = self.last + 1
        self.last = now
        return now


def grpc_body() -> bytes:
    """The protobuf message of ``Dummy(input=3)``, as the Dendrite serializes it."""
    return schema_for(Dummy).to_bytes(Dummy(input=REQUEST_INPUT))


class GrpcSigner:
    """Signs gRPC calls for one client hotkey against one axon hotkey (the Dendrite's metadata)."""

    def __init__(
        self,
        keypair: Keypair,
        axon_hotkey: str,
        body: bytes,
        *,
        timeout: float = 12.0,
        external_ip: str = "127.0.0.1",
        method: str = GRPC_METHOD,
    ) -> None:
        self.keypair = keypair
        self.hotkey = keypair.ss58_address
        self.axon_hotkey = axon_hotkey
        self.body = body
        self.body_hash = grpc_body_hash(method, body)
        self.timeout = str(timeout)
        self.external_ip = external_ip
        self.crypto = keypair.crypto_type

    def metadata(self, dendrite_uuid: str, nonce: int) -> tuple[tuple[str, str], ...]:
        """The metadata of one call, signed over ``nonce``."""
        message = f"{nonce}.{self.hotkey}.{self.axon_hotkey}.{dendrite_uuid}.{self.body_hash}"
        signature = "0x" + bytes(self.keypair.sign(message)).hex()
        return (*self.unsigned_metadata(dendrite_uuid, nonce), (DENDRITE_PREFIX + "signature", signature))

    def unsigned_metadata(self, dendrite_uuid: str, nonce: int) -> tuple[tuple[str, str], ...]:
        """That metadata without the signature key."""
        return (
            ("name", SYNAPSE_NAME),
            ("timeout", self.timeout),
            ("computed_body_hash", self.body_hash),
            (DENDRITE_PREFIX + "hotkey", self.hotkey),
            (DENDRITE_PREFIX + "nonce", str(nonce)),
            (DENDRITE_PREFIX + "uuid", dendrite_uuid),
            (DENDRITE_PREFIX + "version", str(PROTOCOL_VERSION)),
            (DENDRITE_PREFIX + "ip", self.external_ip),
            (CRYPTO_HEADER, self.crypto),
        )


def legacy_request_parts(
    keypair: Keypair,
    axon_hotkey: str,
    host: str,
    port: int,
    dendrite_uuid: str,
    nonce: int,
    *,
    timeout: float = 12.0,
    external_ip: str = "127.0.0.2",
) -> tuple[list[tuple[str, str]], bytes, str]:
    """Headers (in wire order, transport headers included), JSON body and body hash of one
    signed legacy request for ``Dummy(input=3)``, built the way a 10.5 dendrite builds it."""
    synapse = Dummy(input=REQUEST_INPUT)
    synapse.timeout = timeout
    synapse.dendrite = TerminalInfo(
        ip=external_ip,
        version=PROTOCOL_VERSION,
        nonce=nonce,
        uuid=dendrite_uuid,
        hotkey=keypair.ss58_address,
    )
    synapse.axon = TerminalInfo(ip=host, port=port, hotkey=axon_hotkey)
    body_hash = synapse.body_hash
    message = f"{nonce}.{keypair.ss58_address}.{axon_hotkey}.{dendrite_uuid}.{body_hash}"
    synapse.dendrite.signature = "0x" + bytes(keypair.sign(message)).hex()
    body = json.dumps(synapse.model_dump()).encode()
    headers = [
        ("Host", f"{host}:{port}"),
        *synapse.to_headers().items(),
        *_AIOHTTP_TAIL,
        ("Content-Length", str(len(body))),
        ("Content-Type", "application/json"),
    ]
    return headers, body, body_hash


class LegacyHttpRequest:
    """Raw HTTP/1.1 bytes of legacy requests from one dendrite uuid, re-signed per request."""

    def __init__(
        self,
        keypair: Keypair,
        axon_hotkey: str,
        host: str,
        port: int,
        dendrite_uuid: str,
        clock: NonceClock | None = None,
        *,
        timeout: float = 12.0,
    ) -> None:
        self.keypair = keypair
        self.clock = clock or NonceClock()
        self.prefix = f"{keypair.ss58_address}.{axon_hotkey}.{dendrite_uuid}."
        nonce = self.clock()
        headers, body, body_hash = legacy_request_parts(
            keypair, axon_hotkey, host, port, dendrite_uuid, nonce, timeout=timeout
        )
        self.body_hash = body_hash
        head = f"POST {HTTP_PATH} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        raw = head.encode("latin-1") + body
        signature = dict(headers)[DENDRITE_PREFIX + "signature"].encode()
        nonce_text = str(nonce).encode()
        if len(nonce_text) != 19 or raw.count(nonce_text) != 2 or raw.count(signature) != 2:
            raise RuntimeError("unexpected legacy request layout: cannot re-sign it in place")
        # Split around the two nonce and two signature occurrences once; join per request.
        self._parts: list[bytes] = []
        self._slots: list[int] = []  # 0 = nonce, 1 = signature
        rest = raw
        while True:
            i, j = rest.find(nonce_text), rest.find(signature)
            if i < 0 and j < 0:
                self._parts.append(rest)
                break
            if j < 0 or (0 <= i < j):
                self._parts.append(rest[:i])
                self._slots.append(0)
                rest = rest[i + len(nonce_text) :]
            else:
                self._parts.append(rest[:j])
                self._slots.append(1)
                rest = rest[j + len(signature) :]

    def render(self) -> bytes:
        """The next request: a fresh nonce, signed."""
        nonce = self.clock()
        nonce_text = str(nonce)
        signature = "0x" + bytes(self.keypair.sign(f"{nonce_text}.{self.prefix}{self.body_hash}")).hex()
        values = (nonce_text.encode(), signature.encode())
        parts = self._parts
        out = [parts[0]]
        for k, slot in enumerate(self._slots):
            out.append(values[slot])
            out.append(parts[k + 1])
        return b"".join(out)


def pipeline_call(headers: dict[str, str], body: bytes, peer_port: int, deadline: float | None = None) -> Call:
    """The :class:`~axon_grpc.server.call.Call` grpc.aio would hand the pipeline for one bench request."""
    return Call(
        name=SYNAPSE_NAME,
        headers=headers,
        codec=GRPC_CODEC,
        body=body,
        peer_ip="127.0.0.1",
        peer_port=peer_port,
        deadline=deadline,
        deadline_enforced=deadline is not None,
        path=GRPC_METHOD,
    )
