"""Attacks on ``axon-session/1`` under a real ``axon-grpc serve`` (Envoy via pyvoy): what the edge's
ASGI adapter answers to hostile opens and session calls (tests/test_session_attacks.py has the
same attacks on grpc.aio)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import AsyncIterator, Iterator

import grpc
import pytest

from axon_grpc import Dendrite, Keypair
from axon_grpc.auth import session_wire as wire
from axon_grpc.info import AxonInfo
from axon_grpc.streaming import varint

from ..raw_h2 import raw_grpc_call
from ..session_support import BODY_7, DUMMY, call, opened, raw_open, session_metadata, signed_open
from .axon_app import Story
from .support import requires_pyvoy, stop
from .test_serve_axon import AXON_HOTKEY, serve

pytestmark = [requires_pyvoy]

OPEN_LIMIT = "A session open has at most 1024 bytes (rule R25)"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[subprocess.Popen[str], int]]:
    process, port = serve()
    try:
        yield process, port
    finally:
        assert stop(process) == 0


@pytest.fixture
async def channel(served: tuple[subprocess.Popen[str], int]) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{served[1]}", options=[("grpc.max_send_message_length", 8 << 20)])
    try:
        yield channel
    finally:
        await channel.close()


async def test_a_mac_outside_ascii_is_a_mismatch_through_envoy(
    served: tuple[subprocess.Popen[str], int], channel: grpc.aio.Channel
) -> None:
    port = served[1]
    session = await opened(channel, AXON_HOTKEY)

    def raw(counter: int, mac: bytes | None = None) -> list[tuple[bytes, bytes]]:
        metadata = session_metadata(session, counter, BODY_7)
        return [(k.encode(), mac if mac is not None and k == wire.MAC_KEY else v.encode()) for k, v in metadata]

    answer = await asyncio.to_thread(raw_grpc_call, port, DUMMY, BODY_7, raw(1))
    assert answer[b"grpc-status"] == b"0"
    for counter, mac in ((2, b"\xe9" * 64), (3, "\u00e9".encode() * 32), (4, b"\x80" * 10)):
        answer = await asyncio.to_thread(raw_grpc_call, port, DUMMY, BODY_7, raw(counter, mac))
        assert (answer[b"grpc-status"], answer[b"grpc-message"]) == (
            b"16",
            b"Not Verified with error: Session MAC mismatch (rule R27)",
        )
    answer = await asyncio.to_thread(raw_grpc_call, port, DUMMY, BODY_7, raw(2))
    assert answer[b"grpc-status"] == b"0"  # the forgeries burnt no counter
    assert process_alive(served[0])


def process_alive(process: subprocess.Popen[str]) -> bool:
    return process.poll() is None


async def test_a_4_mib_open_is_refused_through_envoy(
    served: tuple[subprocess.Popen[str], int], channel: grpc.aio.Channel
) -> None:
    """Under and over the adapter's own bound on a message (4 MiB): the open's refusal either way."""
    for size in ((4 << 20) - 64, 6 << 20):
        started = time.monotonic()
        status, _, details, trailers = await raw_open(channel, b"\x0a" + varint(size) + bytes(size))
        assert (status, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, OPEN_LIMIT)
        assert trailers["axon-sessions"] == wire.VERSION and "bt_header_axon_signature" not in trailers
        assert time.monotonic() - started < 5
    # A message flagged compressed: the client's error too, not the server's.
    data = signed_open(Keypair.generate(), AXON_HOTKEY).encode()
    answer = await asyncio.to_thread(raw_grpc_call, served[1], wire.OPEN_METHOD, data, [], flag=1)
    assert answer[b"grpc-status"] in (b"3", b"12"), answer


async def test_an_open_of_two_messages_or_never_ended_is_a_client_error_through_envoy(
    channel: grpc.aio.Channel,
) -> None:
    method = channel.stream_unary(wire.OPEN_METHOD)

    async def two() -> AsyncIterator[bytes]:
        for _ in range(2):
            yield signed_open(Keypair.generate(), AXON_HOTKEY).encode()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await method(two(), timeout=10)
    assert (refused.value.code(), refused.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Improperly formatted session open: request has more than one message (rule R25)",
    )
    assert dict(refused.value.trailing_metadata() or ())["axon-sessions"] == wire.VERSION

    async def never_ended() -> AsyncIterator[bytes]:
        yield signed_open(Keypair.generate(), AXON_HOTKEY).encode()
        await asyncio.sleep(30)

    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as held:
        await method(never_ended(), timeout=20)
    assert held.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 8  # the open's own bound (5 s), not the caller's deadline
    assert (await call(channel, DUMMY, BODY_7, session_metadata(await opened(channel, AXON_HOTKEY), 1, BODY_7)))[
        0
    ] == grpc.StatusCode.OK


async def test_counters_and_ids_forged_through_envoy(channel: grpc.aio.Channel) -> None:
    session = await opened(channel, AXON_HOTKEY)
    metadata = session_metadata(session, 1, BODY_7)
    cases = {
        (
            wire.COUNTER_KEY,
            "+1",
        ): "Improperly formatted request. axon-session-counter must be a non-negative decimal integer (rule R4)",
        (wire.COUNTER_KEY, "0"): "Not Verified with error: Session counter must be at least 1 (rule R27)",
        (
            wire.COUNTER_KEY,
            str(2**64),
        ): "Not Verified with error: Session call limit reached; open a new one (rule R27)",
        (
            wire.SESSION_KEY,
            "00000000-" + "0" * 32,
        ): "Not Verified with error: Session of another worker; open a new one (rule R27)",
        (wire.MAC_KEY, "A" * 64): "Not Verified with error: Session MAC mismatch (rule R27)",
    }
    for (key, value), details in cases.items():
        changed = [(k, value if k == key else v) for k, v in metadata]
        status, _, got, trailers = await call(channel, DUMMY, BODY_7, changed)
        assert got == details
        assert "bt_header_axon_signature" not in trailers or status == grpc.StatusCode.INVALID_ARGUMENT
    assert (await call(channel, DUMMY, BODY_7, metadata))[0] == grpc.StatusCode.OK


async def test_the_open_rate_is_per_caller_address_through_envoy(served: tuple[subprocess.Popen[str], int]) -> None:
    """The adapter keys the open bucket by the caller's own address, not Envoy's: one address past
    its burst (20) is refused while another is still served."""
    port = served[1]
    keypair = Keypair.generate()

    def open_from(source: str) -> bytes:
        answer = raw_grpc_call(port, wire.OPEN_METHOD, signed_open(keypair, AXON_HOTKEY).encode(), [], source=source)
        return answer[b"grpc-status"]

    first = [await asyncio.to_thread(open_from, "127.0.0.6") for _ in range(24)]
    assert first.count(b"0") <= 21 and first[-1] == b"14", first
    assert await asyncio.to_thread(open_from, "127.0.0.7") == b"0"


async def test_a_stream_by_session_through_envoy_runs_once(
    served: tuple[subprocess.Popen[str], int], channel: grpc.aio.Channel
) -> None:
    port = served[1]
    axon = AxonInfo(version=0, ip="127.0.0.1", port=port, ip_type=4, hotkey=AXON_HOTKEY, coldkey="")
    async with Dendrite(sessions="required") as dendrite:
        items = [item async for item in dendrite.call_stream(axon, Story(prompt="one two"), deserialize=False)]
    assert items[:2] == ["ONE", "TWO"] and items[-1].dendrite.status_code == 200
    session = await opened(channel, AXON_HOTKEY)
    body = b"\x0a\x07one two"  # Story(prompt="one two")
    metadata = session_metadata(session, 1, body, method="/axon.v1.Axon/Story")
    outcomes = []
    for _ in range(2):
        stream = channel.unary_stream("/axon.v1.Axon/Story")(body, metadata=metadata, timeout=10)
        try:
            outcomes.append(len([m async for m in stream]))
        except grpc.aio.AioRpcError as e:
            outcomes.append(e.details())
    assert outcomes == [3, "Not Verified with error: Session counter already used (rule R27)"]


async def test_an_open_flood_from_one_address_is_refused_past_its_burst_through_envoy(
    channel: grpc.aio.Channel,
) -> None:
    """Last in this module: it empties the address's open bucket (20, 5 a second)."""
    keypair = Keypair.generate()
    answers = await asyncio.gather(*(raw_open(channel, signed_open(keypair, AXON_HOTKEY).encode()) for _ in range(60)))
    codes = [a[0] for a in answers]
    assert codes.count(grpc.StatusCode.UNAVAILABLE) >= 60 - 20 - 5
    assert {a[2] for a in answers if a[0] == grpc.StatusCode.UNAVAILABLE} == {
        "Too many session opens; retry later (rule R25)"
    }
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    assert not any("bt_header_axon_signature" in a[3] for a in answers)
