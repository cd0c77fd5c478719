"""Shared test helpers: synapse types used across the suite and a raw gRPC signer."""

from __future__ import annotations

import asyncio
import random
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Awaitable, Callable, Iterator, Optional, TypeVar

import grpc

from axon_grpc import Keypair, StreamingSynapse, Synapse, SynapseException
from axon_grpc.auth.legacy import PROTOCOL_VERSION, grpc_body_hash
from axon_grpc.auth.nonces import NonceStore, NonceVerdict

#: Requests and responses captured from a real Bittensor SDK 10.5.0 exchange (see its README).
CONFORMANCE = Path(__file__).resolve().parent / "data" / "conformance"


T = TypeVar("T")


async def settles_to(probe: Callable[[], Awaitable[T]], expected: T, timeout: float = 20.0) -> None:
    """Until ``await probe()`` gives ``expected``; fails with the last value seen after ``timeout``
    seconds. For server state that changes a moment after the event a test caused (a
    cancellation, a cut, a drain): the bound is generous, the assertion as strict as one check."""
    deadline = time.monotonic() + timeout
    while (seen := await probe()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{seen!r} != {expected!r} after {timeout} s")
        await asyncio.sleep(0.05)


def settles(probe: Callable[[], T], expected: T, timeout: float = 20.0) -> None:
    """:func:`settles_to` for a test without an event loop: ``probe()`` is called in this thread."""

    async def awaited() -> T:
        return probe()

    asyncio.run(settles_to(awaited, expected, timeout))


class Dummy(Synapse):
    input: int
    output: Optional[int] = None

    required_hash_fields = ("input",)


def dummy_forward(synapse: Dummy) -> Dummy:
    synapse.output = synapse.input * 2
    return synapse


def dummy_blacklist(synapse: Dummy) -> tuple[bool, str]:
    return synapse.input == 13, "input 13 is blacklisted"


class Boom(Synapse):
    """Its forward fails with details that must never reach the wire."""

    text: str = ""


def boom_forward(synapse: Boom) -> Boom:
    raise RuntimeError("secret internal detail")


class Said(Synapse):
    """Its forward refuses with a message meant for the caller."""

    text: str = ""


def said_forward(synapse: Said) -> Said:
    raise SynapseException("the miner says no")


class Sleepy(Synapse):
    """Its forward sleeps ``seconds``: longer than a caller's patience, in the deadline tests."""

    seconds: float = 0.0


async def sleepy_forward(synapse: Sleepy) -> Sleepy:
    await asyncio.sleep(synapse.seconds)
    return synapse


class Flood(StreamingSynapse):
    """Answers with chunks for as long as anyone takes them."""

    seed: int = 0


#: One chunk of :class:`Flood`: more than a few of them fill any flow-control window.
FLOOD_CHUNK = "x" * (256 * 1024)


async def flood_forward(synapse: Flood):
    while True:
        yield FLOOD_CHUNK
        await asyncio.sleep(0)


class RawCaller:
    """Builds and signs gRPC requests by hand, the way a client in another language would."""

    def __init__(self, address: str, axon_hotkey: str, keypair: Keypair | None = None) -> None:
        self.address = address
        self.axon_hotkey = axon_hotkey
        self.keypair = keypair or Keypair.generate()
        self.uuid = str(uuid.uuid1())
        self.channel = grpc.aio.insecure_channel(address)

    def metadata(
        self, body: bytes, *, method: str = "Dummy", nonce: int | None = None, **overrides: str | None
    ) -> list[tuple[str, str]]:
        """Signed metadata of a call of ``/axon.v1.Axon/{method}`` with ``body``."""
        nonce = time.time_ns() if nonce is None else nonce
        body_hash = grpc_body_hash(f"/axon.v1.Axon/{method}", body)
        hotkey = self.keypair.ss58_address
        message = f"{nonce}.{hotkey}.{self.axon_hotkey}.{self.uuid}.{body_hash}"
        values: dict[str, str | None] = {
            "bt_header_dendrite_hotkey": hotkey,
            "bt_header_dendrite_nonce": str(nonce),
            "bt_header_dendrite_uuid": self.uuid,
            "bt_header_dendrite_version": str(PROTOCOL_VERSION),
            "bt_header_dendrite_signature": self.keypair.sign_hex(message),
            "bt_header_dendrite_crypto": self.keypair.crypto_type,
            "computed_body_hash": body_hash,
            "timeout": "12.0",
        }
        values.update(overrides)
        return [(k, v) for k, v in values.items() if v is not None]

    async def call(
        self, method: str, body: bytes, metadata: list[tuple[str, str]] | None = None, timeout: float = 10.0
    ) -> tuple[grpc.StatusCode, bytes | None, str, dict[str, str]]:
        """(status, response bytes or None, details, trailing metadata) of one raw call."""
        rpc = self.channel.unary_unary(f"/axon.v1.Axon/{method}")
        call = rpc(
            body, metadata=metadata if metadata is not None else self.metadata(body, method=method), timeout=timeout
        )
        try:
            response = await call
        except grpc.aio.AioRpcError as e:
            trailing = {k: v for k, v in (e.trailing_metadata() or ())}
            return e.code(), None, e.details() or "", trailing
        trailing = {k: v for k, v in (await call.trailing_metadata() or ())}
        return grpc.StatusCode.OK, response, "", trailing

    async def close(self) -> None:
        await self.channel.close()


async def check_concurrent_rounds(store: NonceStore, *, rounds: int, concurrency: int, seed: int) -> None:
    """Rounds of concurrent checks of one key, each nonce taken in one order and checked in
    another: all accepted; then a sample of earlier nonces, replayed: all refused."""
    rng = random.Random(seed)
    key = "hk:uuid"

    async def check(nonce: int) -> NonceVerdict:
        await asyncio.sleep(rng.random() * 0.003)  # arrival order differs from issue order
        return await store.check_and_store(key, nonce, time.time_ns() - 10 * 10**9)

    accepted: list[int] = []
    for _ in range(rounds):
        nonces = [time.time_ns() for _ in range(concurrency)]
        verdicts = await asyncio.gather(*(check(n) for n in nonces))
        assert set(verdicts) == {NonceVerdict.ACCEPTED}, verdicts
        accepted += nonces
        replays = rng.sample(accepted, 10) + accepted[:3]  # inside the window and far below it
        verdicts = await asyncio.gather(*(store.check_and_store(key, n, None) for n in replays))
        assert set(verdicts) == {NonceVerdict.NOT_NEWER}, verdicts


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port where nothing listens, held for the block: a socket bound to it and
    never listening, so a connection is refused and no other program can take the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])
