"""Many calls at once on one connection (docs/SPEC.md rule R23): calls past the axon's
HTTP/2 stream limit wait for a slot in the client, and none is refused or reset; the limit
itself still holds (tests/test_inprocess_limits.py: never more calls at once than it allows)."""

from __future__ import annotations

import asyncio
import collections
import uuid

import grpc
import pytest

from axon_grpc.testing import serve_axon
from axon_grpc.transports.grpc_aio import TOO_MANY_CALLS, ConnectionCalls

from .support import Dummy, RawCaller, dummy_forward


async def test_200_dendrite_calls_on_one_channel_all_succeed() -> None:
    """The Dendrite's first 200 calls to an axon, all at once on its one channel."""
    async with serve_axon(dummy_forward) as h:
        for _ in range(2):  # a fresh connection, then the same one again
            results = await asyncio.gather(*(h.call(Dummy(input=i)) for i in range(200)))
            statuses = collections.Counter((r.dendrite.status_code, r.dendrite.status_message) for r in results)
            assert statuses == {(200, "Success"): 200}
            assert [r.output for r in results] == [2 * i for i in range(200)]
        assert h.dendrite.grpc.channel_count() == 1


@pytest.mark.parametrize("one_uuid", [False, True], ids=["a-uuid-per-call", "one-uuid"])
async def test_200_raw_calls_on_one_grpc_aio_channel_are_neither_refused_nor_reset(one_uuid: bool) -> None:
    """A client in another language: 200 signed calls on one channel once it is connected.
    With a uuid per call only the transport could refuse one; with one uuid for all (rule
    R15), the calls signed once the connection is up also keep within the replay window."""
    async with serve_axon(dummy_forward) as h:
        caller = RawCaller(h.info.ip_str(), h.info.hotkey)
        try:
            await caller.channel.channel_ready()

            async def one(i: int) -> tuple[grpc.StatusCode, str]:
                if not one_uuid:
                    caller.uuid = str(uuid.uuid4())
                body = bytes([0x08, i])
                status, _, details, _ = await caller.call("Dummy", body, caller.metadata(body))
                return status, details

            for _ in range(2):
                results = collections.Counter(
                    await asyncio.gather(*(one(i) for i in range(1, 101)), *(one(i) for i in range(1, 101)))
                )
                assert results == {(grpc.StatusCode.OK, ""): 200}
        finally:
            await caller.close()


def test_calls_past_a_connections_bound_are_refused_and_counted_back() -> None:
    calls = ConnectionCalls(2)
    assert calls.enter("ipv4:10.0.0.1:1") and calls.enter("ipv4:10.0.0.1:1")
    assert not calls.enter("ipv4:10.0.0.1:1")  # a third call on that connection
    assert calls.enter("ipv4:10.0.0.1:2")  # another connection has its own bound
    calls.leave("ipv4:10.0.0.1:1")
    assert calls.enter("ipv4:10.0.0.1:1")
    for _ in range(2):
        calls.leave("ipv4:10.0.0.1:1")
    calls.leave("ipv4:10.0.0.1:2")
    assert calls.live == {}  # nothing kept for connections without calls
    assert TOO_MANY_CALLS.endswith("(rule R23)")
