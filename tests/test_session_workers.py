"""Sessions live in the worker that accepted them (docs/SESSIONS.md): two real worker processes
on one port (``axon_grpc.server.workers``, the Redis nonce store they require)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from axon_grpc import Dendrite, Keypair, KeypairWallet
from axon_grpc.client.sessions import open_request
from axon_grpc.server.workers import WorkerGroup

from .fixtures.workers_app import WhoAmI
from .redis_support import RedisServer
from .session_support import call, opened, raw_open, session_metadata
from .test_workers import APP, info

WHOAMI = "/axon.v1.Axon/WhoAmI"
BODY = b"\x08\x07"


async def channel_to_another_worker(port: int, worker: str) -> tuple[grpc.aio.Channel, str]:
    """A channel (its own connection) answered by a worker other than ``worker``, named by the
    ``bt_header_axon_uuid`` of an unsigned ping's answer."""
    for _ in range(60):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        _, _, _, trailers = await call(channel, "/axon.v1.Axon/Synapse", b"", ())
        if trailers["bt_header_axon_uuid"] != worker:
            return channel, trailers["bt_header_axon_uuid"]
        await channel.close()
    raise AssertionError("60 connections all reached one worker")


def test_a_session_used_at_another_worker_is_refused(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BT_AXON_IP", "127.0.0.1")
    monkeypatch.setenv("BT_AXON_PORT", "0")
    monkeypatch.setenv("BT_AXON_NONCE_STORE", redis_server.url)
    with WorkerGroup(APP, workers=2) as group:
        assert group.port is not None
        asyncio.run(_check(group.port))


async def _check(port: int) -> None:
    axon = info(port)
    first = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
    keypair = Keypair.generate()
    session = await opened(first, axon.hotkey, keypair)
    status, _, _, trailers = await call(first, WHOAMI, BODY, session_metadata(session, 1, BODY, method=WHOAMI))
    assert status == grpc.StatusCode.OK
    other, worker = await channel_to_another_worker(port, trailers["bt_header_axon_uuid"])
    try:
        status, _, details, trailers = await call(
            other, WHOAMI, BODY, session_metadata(session, 2, BODY, method=WHOAMI)
        )
        assert (status, details) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Session of another worker; open a new one (rule R27)",
        )
        assert trailers["bt_header_axon_uuid"] == worker
        # The open's nonce is in the shared store: an open replayed to the other worker fails.
        request, _ = open_request(keypair, axon.hotkey)
        assert (await raw_open(first, request.encode()))[0] == grpc.StatusCode.OK
        status, _, details, _ = await raw_open(other, request.encode())
        assert (status, details) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "Not Verified with error: Session open nonce already used (rule R25)",
        )
        again = await opened(other, axon.hotkey, keypair)  # a new open there is served
        status, *_ = await call(other, WHOAMI, BODY, session_metadata(again, 1, BODY, method=WHOAMI))
        assert status == grpc.StatusCode.OK
    finally:
        await first.close()
        await other.close()
    # The Dendrite keeps to one connection, so to one worker: all its calls go by one session.
    async with Dendrite(KeypairWallet.generate(), sessions="required") as dendrite:
        results = await asyncio.gather(
            *(dendrite.call(axon, WhoAmI(input=i), timeout=10, deserialize=False) for i in range(20))
        )
    assert {r.dendrite.status_code for r in results} == {200}
    assert len({r.dendrite.uuid for r in results}) == 1
