"""``axon-grpc serve --workers 2`` on Envoy with the Redis nonce store: a replay to the other process.

Two Envoy processes share the port (SO_REUSEPORT); the kernel picks one per connection.
The test opens connections until it holds one to each process (``Whoami`` answers the
process id), sends a signed call on the first, then the same bytes and metadata on the
second: the second process refuses it, as it shares the first one's nonces in Redis.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import grpc
import pytest

from axon_grpc import Dendrite
from axon_grpc.auth.keys import Keypair
from axon_grpc.info import AxonInfo
from axon_grpc.schema import schema_for

from ..redis_support import RedisServer
from ..support import Dummy
from .axon_app import Whoami
from .support import environment, requires_pyvoy, start_server, stop

pytestmark = [requires_pyvoy]

SEED = "0x" + "44" * 32
AXON_HOTKEY = Keypair.create_from_seed(SEED).ss58_address

#: A channel of its own per connection (gRPC shares subchannels between channels by default).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


async def signed_call(
    dendrite: Dendrite,
    channel: grpc.aio.Channel,
    info: AxonInfo,
    synapse: Any,
    prepared: tuple[bytes, list[tuple[str, str]]] | None = None,
) -> bytes:
    schema = schema_for(type(synapse))
    body, metadata = prepared or dendrite.signer.grpc(info, synapse, 10.0, schema)
    return await channel.unary_unary(f"/axon.v1.Axon/{type(synapse).__name__}")(body, metadata=metadata, timeout=10)


async def pid_of(dendrite: Dendrite, channel: grpc.aio.Channel, info: AxonInfo) -> int:
    reply = await signed_call(dendrite, channel, info, Whoami())
    return int(schema_for(Whoami).from_bytes(reply).get("pid", 0))


async def test_a_replay_sent_to_the_other_envoy_process_is_refused(redis_server: RedisServer) -> None:
    served = start_server(
        [
            sys.executable,
            "-m",
            "axon_grpc",
            "serve",
            "tests.edge.axon_app:build_axon",
            "--workers",
            "2",
            "--axon.ip",
            "127.0.0.1",
            "--axon.port",
            "0",
            "--axon.nonce_store",
            redis_server.url,
            "--grace",
            "2",
        ],
        environment(EDGE_TEST_AXON_SEED=SEED),
    )
    process, port = served.process, served.port
    channels: dict[int, grpc.aio.Channel] = {}
    try:
        info = AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=AXON_HOTKEY, coldkey="")
        async with Dendrite() as dendrite:
            deadline = time.monotonic() + 30  # the second process starts after the first one answers
            while time.monotonic() < deadline:  # each new connection lands on either process
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OWN_CONNECTION)
                pid = await pid_of(dendrite, channel, info)
                if pid in channels:
                    await channel.close()
                    await asyncio.sleep(0.05)
                else:
                    channels[pid] = channel
                if len(channels) == 2:
                    break
            assert len(channels) == 2, "every connection reached the same Envoy process"
            (first_pid, first), (second_pid, second) = channels.items()
            synapse = Dummy(input=3)
            prepared = dendrite.signer.grpc(info, synapse, 10.0, schema_for(Dummy))
            reply = await signed_call(dendrite, first, info, synapse, prepared)
            assert schema_for(Dummy).from_bytes(reply)["output"] == 6
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await signed_call(dendrite, second, info, synapse, prepared)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "Nonce" in (caught.value.details() or "")
            assert await pid_of(dendrite, second, info) == second_pid != first_pid  # it was the other process
    finally:
        for channel in channels.values():
            await channel.close()
        assert stop(process) == 0
