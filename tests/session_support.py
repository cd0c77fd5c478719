"""Helpers of the session tests: opens and session calls made by hand, as any client would."""

from __future__ import annotations

from typing import Any

import grpc

from axon_grpc import Keypair
from axon_grpc.auth import session_wire as wire
from axon_grpc.auth.legacy import grpc_body_hash
from axon_grpc.client.sessions import ClientSession, open_request, open_session

DUMMY = "/axon.v1.Axon/Dummy"
BODY_7 = b"\x08\x07"  # Dummy(input=7)
BODY_8 = b"\x08\x08"


async def call(
    channel: grpc.aio.Channel, method: str, body: bytes, metadata: Any, timeout: float = 10.0
) -> tuple[grpc.StatusCode, bytes | None, str, dict[str, str]]:
    """(status, reply or None, details, trailers) of one raw call."""
    rpc = channel.unary_unary(method)
    pending = rpc(body, metadata=list(metadata), timeout=timeout)
    try:
        reply = await pending
    except grpc.aio.AioRpcError as e:
        return e.code(), None, e.details() or "", dict(e.trailing_metadata() or ())
    return grpc.StatusCode.OK, reply, "", dict(await pending.trailing_metadata() or ())


async def raw_open(
    channel: grpc.aio.Channel, data: bytes, timeout: float = 10.0
) -> tuple[grpc.StatusCode, bytes | None, str, dict[str, str]]:
    """An open sent as bytes: (status, accept bytes or None, details, trailers)."""
    return await call(channel, wire.OPEN_METHOD, data, (), timeout)


def signed_open(keypair: Keypair, axon_hotkey: str, **changes: Any) -> wire.SessionOpen:
    """An open by ``keypair``, with ``changes`` made before it is signed."""
    request, _ = open_request(keypair, axon_hotkey)
    for key, value in changes.items():
        setattr(request, key, value)
    request.signature = keypair.sign_hex(request.transcript())
    return request


async def opened(channel: grpc.aio.Channel, axon_hotkey: str, keypair: Keypair | None = None) -> ClientSession:
    return await open_session(channel, keypair or Keypair.generate(), axon_hotkey)


def session_metadata(
    session: ClientSession,
    counter: int,
    body: bytes,
    *,
    method: str = DUMMY,
    timeout: str | None = "5.0",
    mac_method: str | None = None,
    mac_body: bytes | None = None,
    mac_timeout: str | None = None,
) -> list[tuple[str, str]]:
    """A session call's metadata with ``counter``; the ``mac_*`` values (when given) are what the
    MAC covers instead of what is sent, as an attacker altering a call in flight would."""
    covered_method = mac_method or method
    covered_body = body if mac_body is None else mac_body
    covered_timeout = timeout if mac_timeout is None else mac_timeout
    body_hash = grpc_body_hash(covered_method, covered_body)
    mac = wire.call_mac(session.key, session.id, counter, covered_method, body_hash, covered_timeout)
    metadata = [(wire.SESSION_KEY, session.id), (wire.COUNTER_KEY, str(counter)), (wire.MAC_KEY, mac)]
    if timeout is not None:
        metadata.append(("timeout", timeout))
    return metadata


def count_crypto(monkeypatch: Any, axon: Any) -> tuple[list[Any], list[bytes]]:
    """The messages ``axon`` signs and the signatures any key verifies from now on (each list
    grows as it happens), while both still work."""
    from axon_grpc.auth import keys as keys_module

    signed: list[Any] = []
    verified: list[bytes] = []
    hotkey = axon.terminal.hotkey
    real_verify = keys_module._verify_raw

    class Counting:
        ss58_address = hotkey.ss58_address

        def sign(self, message: Any) -> bytes:
            signed.append(message)
            return bytes(hotkey.sign(message))

    monkeypatch.setattr(keys_module, "_verify_raw", lambda *a: verified.append(a[2]) or real_verify(*a))
    monkeypatch.setattr(axon.terminal, "_hotkey", Counting())
    return signed, verified
