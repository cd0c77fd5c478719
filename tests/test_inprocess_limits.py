"""Issue 13.8: the in-process servers' edge limits, each observed on loopback.

gRPC (grpc.aio): a hard metadata bound, HTTP/2 concurrent streams per connection, a
connection cap, idle and age limits, keepalive enforcement. The HTTP bridge (uvicorn):
a time limit on the request head and body, the keep-alive timeout, the concurrency cap.
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import grpc
import pytest

from axon_grpc import Synapse
from axon_grpc.client.dendrite import Dendrite
from axon_grpc.schema import schema_for
from axon_grpc.server.serving import RPC_HEADROOM
from axon_grpc.testing import AxonHarness, build_axon

from .support import RawCaller, settles_to
from .test_bridge_client import serve_bridge


class Nap(Synapse):
    seconds: float = 0.0


napping = {"now": 0, "peak": 0}


async def nap_forward(synapse: Nap) -> Nap:
    napping["now"] += 1
    napping["peak"] = max(napping["peak"], napping["now"])
    try:
        await asyncio.sleep(synapse.seconds)
    finally:
        napping["now"] -= 1
    return synapse


@asynccontextmanager
async def limited(**limits: Any) -> AsyncIterator[AxonHarness]:
    axon = build_axon(nap_forward, max_workers=32)
    axon.grpc_limits = limits
    await axon.start_async()
    dendrite = Dendrite()
    try:
        yield AxonHarness(axon, dendrite, axon.info())
    finally:
        await dendrite.aclose()
        await axon.stop_async(grace=None)


def _caller(h: AxonHarness, **options: Any) -> RawCaller:
    caller = RawCaller(f"127.0.0.1:{h.axon.port}", h.info.hotkey)
    if options:
        caller.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{h.axon.port}", options=[("grpc.use_local_subchannel_pool", 1), *options.items()]
        )
    return caller


async def _nap(caller: RawCaller, seconds: float, timeout: float = 10.0) -> grpc.StatusCode:
    body = schema_for(Nap).to_bytes({"seconds": seconds})
    return (await caller.call("Nap", body, caller.metadata(body, method="Nap"), timeout=timeout))[0]


async def test_metadata_past_the_bound_is_always_refused() -> None:
    async with limited() as h:
        caller = _caller(h)
        try:
            body = schema_for(Nap).to_bytes({"seconds": 0.0})
            statuses = []
            for _ in range(20):
                metadata = [*caller.metadata(body, method="Nap"), ("x-padding", "p" * (17 * 1024))]
                statuses.append((await caller.call("Nap", body, metadata, timeout=5))[0])
            assert grpc.StatusCode.OK not in statuses, statuses
            assert await _nap(caller, 0.0) is grpc.StatusCode.OK  # still serving
        finally:
            await caller.close()


async def test_concurrent_streams_per_connection_are_capped() -> None:
    async with limited(max_concurrent_streams=2) as h:
        caller = _caller(h)
        try:
            assert await _nap(caller, 0.0) is grpc.StatusCode.OK  # connected
            napping["peak"] = 0
            statuses = await asyncio.gather(*(_nap(caller, 0.5) for _ in range(4)))
            # Two at a time, never a third; the client queues the rest, and none is refused.
            assert napping["peak"] == 2, napping
            assert statuses == [grpc.StatusCode.OK] * 4
        finally:
            await caller.close()


async def test_connections_are_capped() -> None:
    async with limited(max_connections=2) as h:
        callers = [_caller(h, **{"grpc.enable_retries": 0}) for _ in range(3)]
        try:
            first = await asyncio.gather(*(_nap(c, 1.0, timeout=3) for c in callers[:2]), _late(callers[2]))
            assert first[:2] == [grpc.StatusCode.OK] * 2
            assert first[2] is not grpc.StatusCode.OK  # the third connection was closed
        finally:
            await asyncio.gather(*(c.close() for c in callers))


async def _late(caller: RawCaller) -> grpc.StatusCode:
    await asyncio.sleep(0.3)
    return await _nap(caller, 0.0, timeout=0.5)


async def test_idle_connections_are_closed() -> None:
    async with limited(max_connection_idle_s=0.3) as h:
        caller = _caller(h)
        try:
            assert await _nap(caller, 0.0) is grpc.StatusCode.OK
            assert caller.channel.get_state() is grpc.ChannelConnectivity.READY
            await asyncio.sleep(1.2)
            assert caller.channel.get_state() is grpc.ChannelConnectivity.IDLE
        finally:
            await caller.close()


async def test_connections_have_a_maximum_age() -> None:
    async with limited(max_connection_age_s=0.3, max_connection_age_grace_s=0.3) as h:
        caller = _caller(h)
        try:
            assert await _nap(caller, 0.0) is grpc.StatusCode.OK
            assert await _nap(caller, 2.0) is not grpc.StatusCode.OK  # cut at age + grace
        finally:
            await caller.close()


async def test_keepalive_pings_are_enforced() -> None:
    async with limited(min_ping_interval_s=10.0, max_ping_strikes=1) as h:
        caller = _caller(
            h,
            **{
                "grpc.keepalive_time_ms": 100,
                "grpc.keepalive_permit_without_calls": 1,
                "grpc.http2.max_pings_without_data": 0,
                "grpc.http2.min_time_between_pings_ms": 100,
            },
        )
        try:
            assert await _nap(caller, 8.0, timeout=15.0) is grpc.StatusCode.UNAVAILABLE  # GOAWAY too_many_pings
        finally:
            await caller.close()


# -- the HTTP bridge (uvicorn) -------------------------------------------------------------------


def _silent_connection(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port))


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True
    finally:
        sock.close()


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def test_a_connection_that_sends_no_head_is_closed() -> None:
    async with serve_bridge(nap_forward) as b:
        b.axon.http.fast_config.head_timeout_s = 0.5
        sock = await _in_thread(_silent_connection, b.client.http_port)
        assert await _in_thread(_closed_within, sock, 3.0)


async def test_a_head_sent_slowly_is_cut() -> None:
    async with serve_bridge(nap_forward) as b:
        b.axon.http.fast_config.head_timeout_s = 0.5
        sock = await _in_thread(_silent_connection, b.client.http_port)
        for part in (b"POST /Nap HTTP/1.1\r\n", b"host: x\r\n", b"x-slow: 1\r\n", b"x-slow: 2\r\n"):
            sock.sendall(part)
            await asyncio.sleep(0.2)
        assert await _in_thread(_closed_within, sock, 3.0)


async def test_a_body_sent_slowly_is_408() -> None:
    async with serve_bridge(nap_forward) as b:
        b.axon.http.limits.body_timeout_s = 0.5
        headers, body = b.client.prepare(Nap(seconds=0.0))

        async def trickle():
            for byte in body.encode():
                yield bytes([byte])
                await asyncio.sleep(0.1)

        response = await b.client.send("/Nap", headers, trickle())  # type: ignore[arg-type]
        assert response.status == 408, response.text
        assert response.message == "Request body not received within 0.5 s"


async def test_idle_keep_alive_connections_are_closed() -> None:
    async with serve_bridge(nap_forward) as b:
        config = b.axon.http.fast_config
        assert config.timeout_keep_alive == 5
        sock = await _in_thread(_silent_connection, b.client.http_port)
        sock.sendall(b"GET /nothing HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.sleep(0.2)
        sock.recv(65536)  # the 404
        assert await _in_thread(_closed_within, sock, 7.0)


async def test_concurrency_is_capped() -> None:
    async with serve_bridge(nap_forward) as b:
        config = b.axon.http.fast_config
        assert config.limit_concurrency == 1024
        config.limit_concurrency = 2  # read by each new connection
        held = [await _in_thread(_silent_connection, b.client.http_port) for _ in range(2)]

        async def status() -> int:
            return int((await b.client.call(Nap(seconds=0.0))).status)

        try:
            await settles_to(status, 503)  # once the server has both silent connections
        finally:
            for sock in held:
                sock.close()
        await settles_to(status, 200)  # once it has seen them close


@pytest.mark.parametrize("field", ["limit_concurrency", "timeout_keep_alive", "h11_max_incomplete_event_size"])
def test_uvicorn_limits_are_set(field: str) -> None:
    axon = build_axon(nap_forward, http_port=1025 + 7)
    assert getattr(axon.http.fast_config, field) is not None


# -- issue 23: direct mode bounded anyway ---------------------------------------------------------


async def test_grpc_calls_at_once_are_capped_over_all_connections() -> None:
    async with limited(max_concurrent_rpcs=2) as h:
        callers = [_caller(h, **{"grpc.enable_retries": 0}) for _ in range(3)]
        try:
            statuses = await asyncio.gather(*(_nap(c, 0.5, timeout=3) for c in callers))
            assert sorted(s.name for s in statuses) == ["OK", "OK", "RESOURCE_EXHAUSTED"], statuses
        finally:
            await asyncio.gather(*(c.close() for c in callers))


def test_grpc_calls_at_once_default_to_what_admission_holds() -> None:
    axon = build_axon(nap_forward, max_workers=3, max_queue=5)

    async def started() -> Any:
        await axon.start_async()
        try:
            assert axon.grpc_server is not None
            return axon.grpc_server.settings.max_concurrent_rpcs
        finally:
            await axon.stop_async(grace=None)

    assert asyncio.run(started()) == 3 + 5 + RPC_HEADROOM


async def test_a_call_refused_on_its_metadata_never_has_its_message_read() -> None:
    async with limited() as h:
        caller = _caller(h)
        try:
            # Past the 4 MiB bound: a server that read it first would answer RESOURCE_EXHAUSTED.
            body = b"\x00" * (5 * 1024 * 1024)
            status, _, details, _ = await caller.call("Nap", body, [("x-unsigned", "1")], timeout=5)
            assert status is grpc.StatusCode.UNAUTHENTICATED, details
        finally:
            await caller.close()


async def test_connections_past_the_http_cap_are_closed_as_they_arrive() -> None:
    async with serve_bridge(nap_forward) as b:
        config = b.axon.http.fast_config
        assert config.max_connections <= config.limit_concurrency
        config.max_connections = 3  # read by each new connection
        held = [await _in_thread(_silent_connection, b.client.http_port) for _ in range(5)]
        try:
            closed = await asyncio.gather(*(_in_thread(_closed_within, sock, 0.5) for sock in held))
            assert closed == [False, False, False, True, True]
        finally:
            for sock in held:
                sock.close()


async def test_a_signed_message_that_stops_arriving_is_dropped_at_the_body_limit() -> None:
    """Any key signs: such a caller's message is read, but only within the call's own timeout."""
    async with limited() as h:
        caller = _caller(h)
        try:
            body = schema_for(Nap).to_bytes({"seconds": 0.0})
            metadata = caller.metadata(body, method="Nap", timeout="1.0")

            async def never() -> Any:
                await asyncio.sleep(30)
                yield body

            began = asyncio.get_running_loop().time()
            call = caller.channel.stream_unary("/axon.v1.Axon/Nap")(never(), metadata=metadata, timeout=20)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED, refused.value
            assert asyncio.get_running_loop().time() - began < 5  # the body limit, not the client's 20 s
        finally:
            await caller.close()
