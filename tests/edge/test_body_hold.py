"""A request body that never finishes arriving, on the Envoy edge's gRPC adapter.

The adapter reads a message's bytes only when the pipeline asks for them. A stranger's
btauth/1 request that fails a check needing no body is refused without its body being
read; a signed request (any key will do) or a fresh btauth one whose body stops coming
is answered 408 / DEADLINE_EXCEEDED within its timeout instead of holding what it sent
until Envoy's request timeout (300 s).
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from axon_grpc import Keypair, KeypairWallet
from axon_grpc.auth import btauth as btauth_lib
from axon_grpc.auth.legacy import grpc_body_hash
from axon_grpc.edge.app import for_axon
from axon_grpc.testing import build_axon

from ..support import dummy_forward

METHOD = "/axon.v1.Axon/Dummy"
ANNOUNCED = 1024 * 1024
SENT = b"\x00" * 65536  # of the announced megabyte: the rest never comes
DEADLINE_EXCEEDED, UNAUTHENTICATED = b"4", b"16"


class StalledBody:
    """An ASGI ``receive`` giving the message's prefix and first bytes, then nothing."""

    def __init__(self) -> None:
        self.calls = 0
        self.never = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            return {"type": "http.request", "body": struct.pack(">BI", 0, ANNOUNCED) + SENT, "more_body": True}
        await self.never.wait()
        return {"type": "http.disconnect"}


async def call(headers: dict[str, str]) -> tuple[dict[bytes, bytes], StalledBody, float]:
    """One gRPC call of Dummy to the edge application; the status trailers, the receive, the time."""
    app = for_axon(build_axon(dummy_forward, wallet=WALLET))
    scope = {
        "type": "http",
        "path": METHOD,
        "headers": [(b"content-type", b"application/grpc"), *((k.encode(), v.encode()) for k, v in headers.items())],
        "client": ("127.0.0.1", 4000),
    }
    receive = StalledBody()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    start = time.monotonic()
    await asyncio.wait_for(app.grpc(scope, receive, send), 5)
    status: dict[bytes, bytes] = {}
    for message in sent:
        if message["type"] in ("http.response.start", "http.response.trailers"):
            status.update(message["headers"])
    return status, receive, time.monotonic() - start


WALLET = KeypairWallet.generate()
AXON_HOTKEY = WALLET.hotkey.ss58_address


async def test_a_stale_btauth_request_is_refused_without_reading_its_body() -> None:
    stranger = Keypair.generate()
    headers = btauth_lib.sign_headers(
        stranger, method="POST", path=METHOD, body=b"", receiver=AXON_HOTKEY, nonce=time.time_ns() - 60 * 10**9
    )
    status, receive, _ = await call(headers)
    assert status[b"grpc-status"] == UNAUTHENTICATED
    assert receive.calls == 1  # the prefix only: the rest of the body was never asked for


async def test_a_btauth_request_for_another_axon_is_refused_without_reading_its_body() -> None:
    headers = btauth_lib.sign_headers(
        Keypair.generate(), method="POST", path=METHOD, body=b"", receiver=Keypair.generate().ss58_address
    )
    status, receive, _ = await call(headers)
    assert status[b"grpc-status"] == UNAUTHENTICATED and receive.calls == 1


async def test_a_fresh_btauth_request_whose_body_stalls_ends_at_its_timeout() -> None:
    headers = btauth_lib.sign_headers(Keypair.generate(), method="POST", path=METHOD, body=b"", receiver=AXON_HOTKEY)
    status, _, took = await call({**headers, "timeout": "1"})
    assert status[b"grpc-status"] == DEADLINE_EXCEEDED
    assert took < 3


async def test_a_signed_request_whose_body_stalls_ends_at_its_timeout() -> None:
    key = Keypair.generate()  # any key: nothing has vetted the caller before the body is read
    nonce, uuid = time.time_ns(), "5a0c1d4e-0000-4000-8000-000000000002"
    body_hash = grpc_body_hash(METHOD, b"x")
    headers = {
        "bt_header_dendrite_hotkey": key.ss58_address,
        "bt_header_dendrite_nonce": str(nonce),
        "bt_header_dendrite_uuid": uuid,
        "bt_header_dendrite_signature": key.sign_hex(f"{nonce}.{key.ss58_address}.{AXON_HOTKEY}.{uuid}.{body_hash}"),
        "computed_body_hash": body_hash,
        "timeout": "1",
    }
    status, _, took = await call(headers)
    assert status[b"grpc-status"] == DEADLINE_EXCEEDED
    assert took < 3
