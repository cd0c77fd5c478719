"""The Dendrite over both transports: the legacy HTTP protocol to this project's bridge,
gRPC, ``auto`` choosing between them per axon, and the same synapse and status fields
back whichever carried the call."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from axon_grpc import AxonInfo, Dendrite, KeypairWallet
from axon_grpc.testing import serve_axon

from .redis_support import RedisServer
from .support import Boom, Dummy, Said, dummy_forward, refused_port
from .test_bridge_client import serve_bridge


def http_info(info: AxonInfo, http_port: int) -> AxonInfo:
    """The same axon, at its HTTP bridge's port."""
    return dataclasses.replace(info, port=http_port)


class Unknown(Dummy):
    """Attached nowhere."""


CASES = [
    (Dummy(input=3), 200, "Success", 6),
    (Dummy(input=13), 403, "Forbidden. Key is blacklisted: input 13 is blacklisted.", None),
    (Said(text="x"), 500, "the miner says no", None),
    (Unknown(input=1), 404, "Synapse name 'Unknown' not found.", None),
]


async def test_http_and_grpc_give_the_same_synapse_and_status() -> None:
    async with serve_bridge() as bridged:
        info = bridged.axon.info()
        by_http = Dendrite(KeypairWallet.generate(), transport="http")
        by_grpc = Dendrite(KeypairWallet.generate(), transport="grpc")
        targets = [(by_http, http_info(info, int(bridged.axon.http_port))), (by_grpc, info)]
        try:
            for request, status, message, output in CASES:
                results = [
                    await d.call(t, request.model_copy(deep=True), timeout=5.0, deserialize=False) for d, t in targets
                ]
                for result in results:
                    assert result.dendrite.status_code == status, result.dendrite.status_message
                    assert result.dendrite.status_message.startswith(message)
                    assert result.axon.status_code == status
                    assert result.axon.hotkey == bridged.hotkey
                    assert getattr(result, "output", None) == output
                    assert result.dendrite.hotkey is not None and result.dendrite.process_time > 0
            boom = [await d.call(t, Boom(text="x"), timeout=5.0, deserialize=False) for d, t in targets]
            for result in boom:
                assert result.dendrite.status_code == 500
                assert result.dendrite.status_message.startswith("Internal Server Error #")
                assert "secret" not in result.dendrite.status_message
        finally:
            await by_http.aclose()
            await by_grpc.aclose()


async def test_http_transport_signs_the_btauth_way_too() -> None:
    async with serve_bridge() as bridged:
        dendrite = Dendrite(KeypairWallet.generate(), transport="http", auth="btauth")
        try:
            target = http_info(bridged.axon.info(), int(bridged.axon.http_port))
            result = await dendrite.call(target, Dummy(input=4), timeout=5.0, deserialize=False)
            assert (result.dendrite.status_code, result.output) == (200, 8), result.dendrite.status_message
        finally:
            await dendrite.aclose()


async def test_auto_learns_each_axons_protocol_and_remembers_it() -> None:
    async with serve_bridge() as bridged:
        grpc_info = bridged.axon.info()
        legacy_info = http_info(grpc_info, int(bridged.axon.http_port))
        dendrite = Dendrite(KeypairWallet.generate(), transport="auto")
        try:
            assert dendrite.transport_for(grpc_info) == dendrite.transport_for(legacy_info) == "auto"
            results = await dendrite.forward(
                [grpc_info, legacy_info] * 4, Dummy(input=5), timeout=5.0, deserialize=False
            )
            assert [(r.dendrite.status_code, r.output) for r in results] == [(200, 10)] * 8
            assert dendrite.transport_for(grpc_info) == "grpc"
            assert dendrite.transport_for(legacy_info) == "http"
            dendrite.use(legacy_info, "grpc")  # pinned: a gRPC call to an HTTP port fails, no fallback
            pinned = await dendrite.call(legacy_info, Dummy(input=5), timeout=5.0, deserialize=False)
            assert pinned.dendrite.status_code == 503
            dendrite.use(legacy_info, None)
            assert dendrite.transport_for(legacy_info) == "auto"
        finally:
            await dendrite.aclose()


async def test_auto_to_nothing_listening_is_503_and_nothing_learned() -> None:
    dendrite = Dendrite(KeypairWallet.generate(), transport="auto")
    with refused_port() as port:
        hotkey = KeypairWallet.generate().hotkey.ss58_address
        target = AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=hotkey, coldkey="")
        try:
            result = await dendrite.call(target, Dummy(input=1), timeout=3.0, deserialize=False)
            assert result.dendrite.status_code == 503
            assert result.dendrite.status_message == f"Service at {target.ip_str()}/Dummy unavailable."
            assert dendrite.transport_for(target) == "auto"
        finally:
            await dendrite.aclose()


async def test_http_timeout_is_408() -> None:
    """An HTTP port that accepts and never answers: the call ends at its timeout."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = AxonInfo(
        version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=KeypairWallet.generate().hotkey.ss58_address, coldkey=""
    )
    dendrite = Dendrite(KeypairWallet.generate(), transport="http")
    try:
        result = await dendrite.call(target, Dummy(input=1), timeout=0.5, deserialize=False)
        assert result.dendrite.status_code == 408
        assert result.dendrite.status_message == "Request timeout after 0.5 seconds"
    finally:
        await dendrite.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


# -- issue 16, part 1 over the HTTP transport: one Dendrite's concurrent calls ---------------


@pytest.fixture(params=["memory", "redis"])
def nonce_store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


async def test_one_dendrite_many_concurrent_http_calls_none_refused(nonce_store: Any) -> None:
    async with serve_axon(dummy_forward, nonce_store=nonce_store, http_port=0) as h:
        target = http_info(h.info, int(h.axon.http_port))  # type: ignore[arg-type]
        dendrite = Dendrite(KeypairWallet.generate(), transport="http")
        try:
            for _ in range(10):
                results = await dendrite.forward([target] * 48, Dummy(input=3), timeout=12.0, deserialize=False)
                codes = [r.dendrite.status_code for r in results]
                assert codes == [200] * 48, {r.dendrite.status_message for r in results}
        finally:
            await dendrite.aclose()


async def test_any_record_with_ip_port_and_hotkey_is_a_target() -> None:
    """A subtensor's metagraph gives the SDK's own AxonInfo objects: they are called as they are."""
    async with serve_axon(dummy_forward) as h:

        @dataclasses.dataclass
        class ChainAxon:  # the shape of bittensor's chain-data AxonInfo
            ip: str
            port: int
            ip_type: int
            hotkey: str
            version: int = 10005000

        dendrite = Dendrite(KeypairWallet.generate())
        try:
            record = ChainAxon(h.info.ip, h.info.port, 4, h.info.hotkey)
            result = await dendrite.call(record, Dummy(input=2), timeout=5.0, deserialize=False)
            assert (result.dendrite.status_code, result.output) == (200, 4)
        finally:
            await dendrite.aclose()
