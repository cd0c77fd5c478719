"""The replay window end to end: concurrent calls of one caller arrive out of order and
are all served; every exact replay is refused. Over gRPC and the HTTP bridge, with the
in-memory store and with Redis."""

from __future__ import annotations

import asyncio
import random
from typing import Any, AsyncIterator

import grpc
import pytest

from axon_grpc import Dendrite, KeypairWallet
from axon_grpc.testing import serve_axon

from .redis_support import RedisServer
from .support import Dummy, RawCaller, dummy_forward
from .test_bridge_client import serve_bridge

BODY = b"\x08\x07"  # Dummy(input=7)
ROUNDS = 12
CONCURRENCY = 32  # each call of a round is overtaken by up to 31 others: half the default window


@pytest.fixture(params=["memory", "redis"])
def nonce_store(request: pytest.FixtureRequest) -> Any:
    """What the axon is given: None (its in-memory store) or a Redis URL."""
    if request.param == "memory":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


async def test_one_dendrite_many_concurrent_calls_none_refused(nonce_store: Any) -> None:
    async with serve_axon(dummy_forward, nonce_store=nonce_store) as h:
        dendrite = Dendrite(KeypairWallet.generate())
        try:
            for _ in range(ROUNDS):
                results = await dendrite.forward(
                    [h.info] * CONCURRENCY, Dummy(input=3), timeout=12.0, deserialize=False
                )
                codes = [r.dendrite.status_code for r in results]
                assert codes == [200] * CONCURRENCY, {r.dendrite.status_message for r in results}
        finally:
            await dendrite.aclose()


@pytest.fixture
async def grpc_caller(nonce_store: Any) -> AsyncIterator[RawCaller]:
    async with serve_axon(dummy_forward, nonce_store=nonce_store) as h:
        caller = RawCaller(f"127.0.0.1:{h.axon.port}", h.axon.wallet.hotkey.ss58_address)
        try:
            yield caller
        finally:
            await caller.close()


async def test_grpc_calls_sent_in_reverse_are_served_and_replays_refused(grpc_caller: RawCaller) -> None:
    rng = random.Random(7)
    sent: list[list[tuple[str, str]]] = []
    for _ in range(ROUNDS):
        batch = [grpc_caller.metadata(BODY) for _ in range(CONCURRENCY)]  # nonces taken in order...
        results = await asyncio.gather(*(grpc_caller.call("Dummy", BODY, m) for m in reversed(batch)))  # ...sent not
        assert [r[0] for r in results] == [grpc.StatusCode.OK] * CONCURRENCY, {r[2] for r in results}
        sent += batch
        replays = rng.sample(sent, 6) + sent[:2]  # inside the window and far below it
        for status, response, details, _ in await asyncio.gather(
            *(grpc_caller.call("Dummy", BODY, m) for m in replays)
        ):
            assert status == grpc.StatusCode.UNAUTHENTICATED and response is None
            assert details == "Not Verified with error: Nonce is too old, a newer one was last processed (rule R14)"


async def test_http_calls_sent_in_reverse_are_served_and_replays_refused(nonce_store: Any) -> None:
    rng = random.Random(9)
    async with serve_bridge(dummy_forward, nonce_store=nonce_store) as bridged:
        client = bridged.client
        sent: list[tuple[dict[str, str], str]] = []
        for _ in range(ROUNDS // 2):
            batch = [client.prepare(Dummy(input=i)) for i in range(CONCURRENCY)]
            results = await asyncio.gather(*(client.send("/Dummy", h, b) for h, b in reversed(batch)))
            assert [r.status for r in results] == [200] * CONCURRENCY, {r.text for r in results}
            sent += batch
            replays = rng.sample(sent, 6) + sent[:2]
            for response in await asyncio.gather(*(client.send("/Dummy", h, b) for h, b in replays)):
                assert response.status == 401
                assert response.message == "Not Verified with error: Nonce is too old, a newer one was last processed"
