"""Callers of a fleet (:mod:`axon_grpc.fleet_lab`): signed calls kept to be replayed, load in a loop.

Every call is signed by the :class:`~axon_grpc.client.dendrite.Dendrite`'s signer and sent by
hand (gRPC through ``grpc.aio``, legacy HTTP through ``aiohttp``), so the exact request,
body and signed headers, can be sent again later: a replay.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc

from axon_grpc.auth.wallet import KeypairWallet
from axon_grpc.client.dendrite import Dendrite
from axon_grpc.fleet_lab import AXON_PORT, Echo
from axon_grpc.info import AxonInfo
from axon_grpc.schema import schema_for

SCHEMA = schema_for(Echo)


@dataclass
class Call:
    """One request as sent, and what came back."""

    caller: int
    protocol: str  #: "grpc" or "http"
    started: float
    ended: float
    status: str  #: "OK" / "200", else the gRPC code name or HTTP status
    body: bytes
    headers: list[tuple[str, str]]
    answer: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status in ("OK", "200")


class Caller:
    """One validator: a keypair, its Dendrite's signer, a gRPC channel and an HTTP session per target."""

    def __init__(self, index: int, axon_hotkey: str, timeout: float = 5.0, signed_timeout: float = 60.0) -> None:
        self.index = index
        self.dendrite = Dendrite(wallet=KeypairWallet.generate())
        self.axon_hotkey = axon_hotkey
        self.timeout = timeout
        #: The timeout the request states: it widens the freshness window (4 s + this, at most 60), so a
        #: replay sent within that window is refused by the nonce store, not by the freshness rule.
        self.signed_timeout = signed_timeout
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._session: aiohttp.ClientSession | None = None

    def info(self, address: str) -> AxonInfo:
        return AxonInfo(version=0, ip=address, port=AXON_PORT, ip_type=4, hotkey=self.axon_hotkey, coldkey="")

    @property
    def key(self) -> str:
        """The nonce store's key of this caller (legacy scheme: hotkey and uuid)."""
        return f"{self.dendrite.signer.keypair.ss58_address}:{self.dendrite.signer.uuid}"

    def channel(self, address: str) -> grpc.aio.Channel:
        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(f"{address}:{AXON_PORT}")
        return self._channels[address]

    def sign(self, address: str, value: int, protocol: str) -> tuple[bytes, list[tuple[str, str]]]:
        synapse = Echo(input=value)
        if protocol == "grpc":
            return self.dendrite.signer.grpc(self.info(address), synapse, self.signed_timeout, SCHEMA)
        headers, body = self.dendrite.signer.http(self.info(address), synapse, self.signed_timeout)
        return body, list(headers.items())

    async def send(
        self, address: str, protocol: str, body: bytes, headers: list[tuple[str, str]]
    ) -> tuple[str, dict[str, Any]]:
        """Send one signed request to ``address``; (status, answer fields)."""
        if protocol == "grpc":
            rpc = self.channel(address).unary_unary("/axon.v1.Axon/Echo")
            try:
                reply = await rpc(body, metadata=headers, timeout=self.timeout)
            except grpc.aio.AioRpcError as e:
                return e.code().name, {}
            return "OK", dict(SCHEMA.from_bytes(reply))
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.post(f"http://{address}:{AXON_PORT}/Echo", data=body, headers=headers) as r:
                text = await r.read()
                status = str(r.status)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return type(e).__name__, {}
        try:
            answer = json.loads(text) if status == "200" else {}
        except ValueError:
            answer = {}
        return status, answer if isinstance(answer, dict) else {}

    async def call(self, address: str, value: int, protocol: str = "grpc") -> Call:
        body, headers = self.sign(address, value, protocol)
        started = time.monotonic()
        status, answer = await self.send(address, protocol, body, headers)
        return Call(self.index, protocol, started, time.monotonic(), status, body, headers, answer)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        if self._session is not None:
            await self._session.close()
        await self.dendrite.aclose()


async def load(
    callers: list[Caller], address: str, seconds: float, *, http_every: int = 0, pause: float = 0.0
) -> list[Call]:
    """Each caller calls ``address`` back to back for ``seconds`` (every ``http_every``-th call over HTTP)."""
    calls: list[Call] = []
    deadline = time.monotonic() + seconds

    async def run(caller: Caller) -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            protocol = "http" if http_every and n % http_every == 0 else "grpc"
            calls.append(await caller.call(address, n, protocol))
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(run(c) for c in callers))
    return calls


async def replay(callers: list[Caller], calls: list[Call], addresses: list[str]) -> int:
    """Send every accepted call again to every address; how many replays were accepted."""
    by_index = {c.index: c for c in callers}
    accepted = 0
    semaphore = asyncio.Semaphore(32)

    async def one(call: Call, address: str) -> None:
        nonlocal accepted
        async with semaphore:
            status, _ = await by_index[call.caller].send(address, call.protocol, call.body, call.headers)
        accepted += status in ("OK", "200")

    await asyncio.gather(*(one(call, a) for call in calls if call.accepted for a in addresses))
    return accepted
