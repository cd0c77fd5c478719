"""A legacy-protocol client for the bridge tests, built by PROTOCOL.md's rules.

:class:`LegacyClient` prepares requests the way a Bittensor SDK 10.5 ``Dendrite``
does (``preprocess_synapse_for_request``, ``to_headers``, ``model_dump``) and sends
them with aiohttp, so the bridge is exercised by what a real legacy dendrite puts on
the wire. The tests in this module pin the client's own recipe.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping

import aiohttp

from axon_grpc import Axon, Keypair, Synapse
from axon_grpc.auth.legacy import PROTOCOL_VERSION
from axon_grpc.synapse import TerminalInfo
from axon_grpc.testing import Attachment, build_axon

from .support import Dummy, boom_forward, dummy_blacklist, dummy_forward, said_forward


@dataclass
class LegacyResponse:
    """What a legacy dendrite gets back: status, headers (case-insensitive), body."""

    status: int
    headers: Mapping[str, str]
    header_names: list[str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def message(self) -> str:
        return str(self.json.get("message"))


class LegacyClient:
    """Signs and sends legacy HTTP requests to one axon's bridge."""

    def __init__(
        self,
        http_port: int,
        axon_hotkey: str,
        keypair: Keypair | None = None,
        dendrite_uuid: str | None = None,
        *,
        host: str = "127.0.0.1",
        external_ip: str = "127.0.0.2",
    ) -> None:
        self.base_url = f"http://{host}:{http_port}"
        self.host, self.http_port = host, http_port
        self.axon_hotkey = axon_hotkey
        self.keypair = keypair or Keypair.generate()
        self.uuid = dendrite_uuid or str(uuid.uuid1())
        self.external_ip = external_ip
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session, opened on first use (inside the running loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def prepare(
        self, synapse: Synapse, *, timeout: float = 12.0, nonce: int | None = None, sign: bool = True
    ) -> tuple[dict[str, str], str]:
        """Headers and JSON body for ``synapse``, as a 10.5 dendrite builds them."""
        nonce = time.time_ns() if nonce is None else nonce
        synapse.timeout = timeout
        synapse.dendrite = TerminalInfo(
            ip=self.external_ip,
            version=PROTOCOL_VERSION,
            nonce=nonce,
            uuid=self.uuid,
            hotkey=self.keypair.ss58_address,
        )
        synapse.axon = TerminalInfo(ip=self.host, port=self.http_port, hotkey=self.axon_hotkey)
        if sign:
            message = f"{nonce}.{self.keypair.ss58_address}.{self.axon_hotkey}.{self.uuid}.{synapse.body_hash}"
            synapse.dendrite.signature = self.keypair.sign_hex(message)
        headers = synapse.to_headers()
        return headers, json.dumps(synapse.model_dump())

    async def send(
        self, path: str, headers: Mapping[str, str], body: str | bytes | None, method: str = "POST"
    ) -> LegacyResponse:
        """One raw request; ``body`` is sent as ``application/json`` when given."""
        sent = dict(headers)
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.base_url + path, headers=sent, data=body) as response:
            text = await response.text()
            names = [key.decode("latin-1").lower() for key, _ in response.raw_headers]
            return LegacyResponse(response.status, response.headers, names, text)

    async def call(self, synapse: Synapse, *, timeout: float = 12.0, nonce: int | None = None) -> LegacyResponse:
        """Prepare, sign and POST ``synapse`` to ``/{its class name}``."""
        headers, body = self.prepare(synapse, timeout=timeout, nonce=nonce)
        return await self.send(f"/{type(synapse).__name__}", headers, body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Slow(Synapse):
    seconds: float = 0.0


def slow_forward(synapse: Slow) -> Slow:
    time.sleep(synapse.seconds)
    return synapse


#: What the bridge tests attach: the conformance capture's synapses and a few more.
ATTACHMENTS: list[Attachment] = [
    {"forward_fn": dummy_forward, "blacklist_fn": dummy_blacklist},
    boom_forward,
    slow_forward,
    said_forward,
]


@dataclass
class Bridged:
    """A started axon with its bridge, and a legacy client pointed at it."""

    axon: Axon
    client: LegacyClient

    @property
    def hotkey(self) -> str:
        return str(self.axon.wallet.hotkey.ss58_address)

    def verifies(self, response: LegacyResponse) -> bool:
        """Whether the axon's signature on an error response verifies (PROTOCOL.md's message)."""
        h = response.headers
        message = (
            f"{h['bt_header_axon_nonce']}.{self.client.keypair.ss58_address}.{self.hotkey}.{h['bt_header_axon_uuid']}"
        )
        return Keypair.from_ss58(self.hotkey).verify(message, h["bt_header_axon_signature"])

    async def assert_still_serving(self) -> None:
        response = await self.client.call(Dummy(input=5))
        assert response.status == 200, response.text
        assert response.json["output"] == 10


@asynccontextmanager
async def serve_bridge(*attachments: Attachment, **axon_kwargs: Any) -> AsyncIterator[Bridged]:
    """An axon with gRPC and the HTTP bridge on free loopback ports, and a legacy client."""
    axon = build_axon(*(attachments or ATTACHMENTS), http_port=0, **axon_kwargs)
    await axon.start_async()
    client = LegacyClient(int(axon.http_port), axon.wallet.hotkey.ss58_address)
    try:
        yield Bridged(axon, client)
    finally:
        await client.close()
        await axon.stop_async(grace=None)
        await asyncio.sleep(0)


# -- the client's own recipe ------------------------------------------------------------------


def test_prepare_builds_the_legacy_headers_and_signature() -> None:
    axon_key = Keypair.generate()
    client_key = Keypair.generate()
    client = LegacyClient(8092, axon_key.ss58_address, client_key, "c1c45280-e9c4-11f1-b13f-02fc00000001")
    headers, body = client.prepare(Dummy(input=3), nonce=1795716669893194313)
    assert list(headers) == [
        "name",
        "timeout",
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
    # PROTOCOL.md's worked example: Dummy(input=3).
    assert headers["computed_body_hash"] == "a17cffcb9dae15bad7684089c1a5e28670408951a2134f0296e8fca3ed4c94a9"
    assert headers["bt_header_input_obj_input"] == "MA=="
    message = (
        f"1795716669893194313.{client_key.ss58_address}.{axon_key.ss58_address}."
        f"c1c45280-e9c4-11f1-b13f-02fc00000001.{headers['computed_body_hash']}"
    )
    assert Keypair.from_ss58(client_key.ss58_address).verify(message, headers["bt_header_dendrite_signature"])
    assert json.loads(body)["input"] == 3 and json.loads(body)["name"] == "Dummy"
