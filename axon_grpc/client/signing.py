"""Everything a Dendrite signs and checks, in one place, for both transports.

- :meth:`RequestSigner.grpc`: the metadata of a gRPC call (legacy ``bt_header_*`` over the
  SHA3-256 of the message bytes, or btauth/1 over them).
- :meth:`RequestSigner.http`: headers and JSON body of a legacy HTTP request as an SDK
  10.5 dendrite sends it (``computed_body_hash`` over ``required_hash_fields``), or a
  btauth/1 one.
- :func:`check_answer`: whether an answer's ``bt_header_axon_signature`` vouches for its
  body (the ``answer/1`` message of :func:`~axon_grpc.auth.legacy.answer_message`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from axon_grpc.auth import btauth
from axon_grpc.auth.keys import InvalidAddress, parse_signature, verify_signature
from axon_grpc.auth.legacy import (
    CRYPTO_HEADER,
    PROTOCOL_VERSION,
    SIGN_ANSWER_HEADER,
    answer_message,
    grpc_body_hash,
    signed_message,
)
from axon_grpc.info import AxonInfo
from axon_grpc.synapse import (
    AXON_PREFIX,
    BASE_FIELDS,
    DENDRITE_PREFIX,
    INPUT_OBJ_PREFIX,
    Synapse,
    TerminalInfo,
    _required_fields,
    hash_fields_of,
    legacy_body_hash,
)
from axon_grpc.synapse import input_obj_placeholder as _placeholder
from axon_grpc.transports.grpc_codec import METHOD_PREFIX

#: The signing schemes a Dendrite speaks.
AUTH_SCHEMES = ("legacy", "btauth")

#: The axon's replay window (SPEC R14): a nonce overtaken by more newer ones of its key is refused.
REPLAY_WINDOW = 64


class SigningWindow:
    """The calls of one uuid (on one event loop) in signing order (SPEC R23): a call is signed
    only while fewer than ``size`` calls were signed since the oldest one still unfinished,
    counting it, so no call has more than ``size - 1`` newer nonces of its key, whatever order
    the calls reach the axon's nonce check in. Calls without a slot wait, in order."""

    def __init__(self, size: int = REPLAY_WINDOW) -> None:
        self.size = size
        self._next = 0  # sequence number of the next call signed
        self._oldest = 0  # the oldest unfinished call's (``_next`` when none is)
        self._finished: set[int] = set()
        self._waiting: deque[asyncio.Future[int]] = deque()

    def _take(self) -> int:
        self._next += 1
        return self._next - 1

    async def enter(self) -> int:
        """The call's sequence number, once it has a slot; give it back with :meth:`finish`."""
        if not self._waiting and self._next - self._oldest < self.size:
            return self._take()
        slot: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append(slot)
        try:
            return await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():  # given its slot as it was cancelled
                self.finish(slot.result())
            raise

    def finish(self, seq: int) -> None:
        self._finished.add(seq)
        while self._oldest in self._finished:
            self._finished.remove(self._oldest)
            self._oldest += 1
        while self._waiting and self._next - self._oldest < self.size:
            slot = self._waiting.popleft()
            if not slot.cancelled():
                slot.set_result(self._take())


class RequestSigner:
    """Stamps and signs requests with one hotkey, one dendrite uuid and one scheme."""

    def __init__(
        self, keypair: Any, crypto: str, auth: str, uuid: str, external_ip: str, ask_signed_answer: bool = False
    ) -> None:
        if auth not in AUTH_SCHEMES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_SCHEMES)}, not {auth!r}")
        self.keypair = keypair
        self.crypto = crypto
        self.auth = auth
        self.uuid = uuid
        self.external_ip = external_ip
        #: Send ``bt_header_sign_answer: 1`` (the Dendrite checks answers).
        self.ask_signed_answer = ask_signed_answer

    def answer_problem(
        self, synapse: Synapse, axon_hotkey: str, body_hash: str, signature: str | None, session: Any = None
    ) -> str | None:
        """:func:`check_answer` for a request this signer sent (by ``session``, when not signed)."""
        uuid = session.id if session is not None else None if self.auth == "btauth" else self.uuid
        return check_answer(synapse, axon_hotkey, body_hash, signature, uuid)

    def _stamp(self, info: AxonInfo, synapse: Synapse, timeout: float) -> int:
        """Fill ``timeout`` and the two terminal infos as a dendrite does; returns the nonce."""
        synapse.timeout = timeout
        nonce = time.time_ns()
        synapse.dendrite = TerminalInfo(
            ip=self.external_ip,
            version=PROTOCOL_VERSION,
            nonce=nonce,
            uuid=self.uuid,
            hotkey=self.keypair.ss58_address,
        )
        synapse.axon = TerminalInfo(ip=info.ip, port=info.port, hotkey=info.hotkey)
        return nonce

    def _sign_legacy(self, nonce: int, axon_hotkey: str, body_hash: str) -> str:
        message = signed_message(nonce, self.keypair.ss58_address, axon_hotkey, self.uuid, body_hash)
        return "0x" + bytes(self.keypair.sign(message)).hex()

    def _btauth(self, path: str, body: bytes, receiver: str, nonce: int, synapse: Synapse) -> dict[str, str]:
        headers = btauth.sign_headers(
            self.keypair, method="POST", path=path, body=body, receiver=receiver, nonce=nonce, scheme=self.crypto
        )
        assert synapse.dendrite is not None
        synapse.dendrite.signature = headers[btauth.HEADER_SIGNATURE]
        return headers

    def grpc(
        self, info: AxonInfo, synapse: Synapse, timeout: float, schema: Any, session: Any = None
    ) -> tuple[bytes, list[tuple[str, str]]]:
        """The message bytes and signed metadata of a gRPC call to ``info``; by ``session`` (a
        :class:`~axon_grpc.client.sessions.ClientSession`) when given: its id, counter and MAC
        instead of a signature (``synapse.dendrite`` then holds the counter as its nonce and the
        session id as its uuid, as the axon's hooks see them)."""
        nonce = self._stamp(info, synapse, timeout)
        name = type(synapse).__name__
        body: bytes = schema.to_bytes(synapse)
        metadata = [("name", name)]
        if self.ask_signed_answer:
            metadata.append((SIGN_ANSWER_HEADER, "1"))
        if session is not None:
            counter, stamped = session.stamp(METHOD_PREFIX + name, body, timeout)
            assert synapse.dendrite is not None
            synapse.dendrite.__dict__.update(nonce=counter, uuid=session.id)
            return body, metadata + stamped
        metadata.append(("timeout", str(timeout)))
        if self.auth == "btauth":
            metadata += self._btauth(METHOD_PREFIX + name, body, info.hotkey, nonce, synapse).items()
            return body, metadata
        body_hash = grpc_body_hash(METHOD_PREFIX + name, body)  # binds the method too
        signature = self._sign_legacy(nonce, info.hotkey, body_hash)
        d = synapse.dendrite
        assert d is not None
        d.signature = signature
        metadata += [
            ("computed_body_hash", body_hash),
            (DENDRITE_PREFIX + "hotkey", d.hotkey),  # type: ignore[list-item]
            (DENDRITE_PREFIX + "nonce", str(nonce)),
            (DENDRITE_PREFIX + "uuid", self.uuid),
            (DENDRITE_PREFIX + "version", str(PROTOCOL_VERSION)),
            (DENDRITE_PREFIX + "signature", signature),
            (DENDRITE_PREFIX + "ip", self.external_ip),
            (CRYPTO_HEADER, self.crypto),
        ]
        return body, metadata

    def http(self, info: AxonInfo, synapse: Synapse, timeout: float) -> tuple[dict[str, str], bytes]:
        """Headers and JSON body of a legacy HTTP request to ``info`` (``POST /{Name}``).

        Legacy scheme: what an SDK 10.5 dendrite sends (``synapse.to_headers()``'s keys
        that an axon reads, ``model_dump()`` JSON), built without its per-request schema
        and size work. btauth/1: JSON of the user fields, signed over method, path and body.
        """
        nonce = self._stamp(info, synapse, timeout)
        cls = type(synapse)
        name = cls.__name__
        headers = {"name": name, "timeout": str(timeout), "content-type": "application/json"}
        if self.ask_signed_answer:
            headers[SIGN_ANSWER_HEADER] = "1"
        if self.auth == "btauth":
            body = synapse.__pydantic_serializer__.to_json(synapse, include=_user_field_set(cls))
            headers.update(self._btauth("/" + name, body, info.hotkey, nonce, synapse))
            return headers, body
        body_hash = legacy_body_hash(synapse, hash_fields_of(cls))
        d = synapse.dendrite
        assert d is not None
        d.signature = self._sign_legacy(nonce, info.hotkey, body_hash)
        for block, prefix in ((synapse.axon, AXON_PREFIX), (d, DENDRITE_PREFIX)):
            for key, value in block.__dict__.items():  # type: ignore[union-attr]
                if value is not None:
                    headers[prefix + key] = str(value)
        if self.crypto != "sr25519":
            headers[CRYPTO_HEADER] = self.crypto
        values = synapse.__dict__
        for field in _required_fields(cls):  # the legacy axon builds its header-only synapse from these
            placeholder = _placeholder(values[field])
            if placeholder is not None:
                headers[INPUT_OBJ_PREFIX + field] = placeholder
        headers["computed_body_hash"] = body_hash
        return headers, synapse.__pydantic_serializer__.to_json(synapse)


_user_sets: dict[type, set[str]] = {}


def _user_field_set(cls: type[Synapse]) -> set[str]:
    found = _user_sets.get(cls)
    if found is None:
        found = _user_sets[cls] = set(cls.model_fields) - BASE_FIELDS
    return found


def check_answer(
    synapse: Synapse, axon_hotkey: str, body_hash: str, signature: str | None, uuid: str | None
) -> str | None:
    """None when ``signature`` is ``axon_hotkey``'s over this answer to ``synapse``'s request,
    else why not. ``synapse.dendrite`` holds the request's nonce and hotkey; ``uuid`` is
    the request's (None for btauth/1, which has none). An SS58 address does not say its
    key's scheme: sr25519 is tried, then ed25519."""
    if not signature:
        return "the axon did not sign its answer"
    d = synapse.dendrite
    assert d is not None
    message = answer_message(d.nonce, d.hotkey, axon_hotkey, uuid, body_hash).encode()
    try:
        raw = parse_signature(signature)
        if any(verify_signature(axon_hotkey, message, raw, crypto) for crypto in ("sr25519", "ed25519")):
            return None
    except (ValueError, InvalidAddress):
        return "malformed answer signature"
    return "answer signature mismatch"
