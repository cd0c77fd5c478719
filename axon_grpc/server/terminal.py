"""The axon's own terminal info: what every answer says about the server, and its signature.

Built from the axon's state only (never from anything a caller sent): its advertised
ip and port, protocol version, instance uuid, hotkey, a fresh nonce per answer, the
status and the process time.
Error answers are signed, as the legacy axon signs them; the constant part of the
trailing metadata is computed once. Answers are signed too when the axon was built with
``sign_answers=True`` or the request asks for it (``bt_header_sign_answer: 1``): over
``answer/1.{request_nonce}.{dendrite_hotkey}.{axon_hotkey}.{request_uuid}.{body_hash}``,
where ``body_hash`` is the SHA3-256 of the gRPC response message bytes as sent, or over
JSON the legacy field hash of every user field (:func:`~axon_grpc.synapse.answer_body_hash`).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

from axon_grpc._types import Signer
from axon_grpc.auth.legacy import SIGN_ANSWER_HEADER, answer_message, response_message
from axon_grpc.server.call import Codec, Outcome
from axon_grpc.synapse import AXON_PREFIX, Synapse, TerminalInfo, terminal_info


def forward_status(info: object) -> tuple[int, str] | None:
    """The status a forward set on its synapse's terminal info, if it set one (not 100 or 200)."""
    code = info.status_code if isinstance(info, TerminalInfo) else None
    if code is None or code in (100, 200):
        return None
    return int(code), (info.status_message or "") if isinstance(info, TerminalInfo) else ""


class AxonTerminal:
    """The axon's identity as answers carry it. ``hotkey`` is resolved on first use."""

    def __init__(
        self,
        hotkey: Callable[[], Signer],
        uuid: str,
        version: int,
        address: Callable[[], tuple[str, int]],
        sign_answers: bool = False,
    ) -> None:
        self._resolve = hotkey
        self._hotkey: Signer | None = None
        self._resolve_address = address
        self._address: tuple[str, int] | None = None
        self.uuid = uuid
        self.version = version
        self._constant: tuple[tuple[str, str], ...] | None = None
        #: Sign every successful answer, not only those whose request asks for it.
        self.sign_answers = sign_answers

    @property
    def hotkey(self) -> Signer:
        if self._hotkey is None:
            self._hotkey = self._resolve()
        return self._hotkey

    @property
    def address(self) -> str:
        return self.hotkey.ss58_address

    @property
    def endpoint(self) -> tuple[str, int]:
        """The advertised ``(ip, port)``."""
        if self._address is None:
            self._address = self._resolve_address()
        return self._address

    def info(self, status: int, message: str | None, process_time: float | None = None) -> TerminalInfo:
        """This axon's terminal info for one answer (a fresh nonce)."""
        ip, port = self.endpoint
        return terminal_info(
            status_code=status,
            status_message=message,
            process_time=process_time,
            ip=ip,
            port=port,
            version=self.version,
            nonce=time.time_ns(),
            uuid=self.uuid,
            hotkey=self.address,
        )

    def stamp(
        self, synapse: Synapse, given: TerminalInfo | None, status: int, message: str, process_time: float
    ) -> tuple[int, str]:
        """Set the answer's status on ``synapse.axon`` and return it.

        A status the forward set on ``synapse.axon`` (other than 100 and 200) is kept with
        its message, as the SDK keeps it. The info is ``given`` (the one the request's
        synapse was built with, its nonce from then) when the forward kept it, else a new
        one of the axon's own.
        """
        values = synapse.__dict__
        info = values.get("axon")
        own = forward_status(info)
        if own is not None:
            status, message = own
        if given is not None and info is given:
            given.__dict__.update(status_code=status, status_message=message, process_time=process_time)
        else:
            values["axon"] = self.info(status, message, process_time)
        return status, message

    def sign(self, synapse: Synapse) -> None:
        """Sign ``{axon_nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}`` into ``synapse.axon``."""
        info = synapse.axon
        assert info is not None
        dendrite = synapse.dendrite.hotkey if synapse.dendrite is not None else None
        message = response_message(info.nonce, dendrite, self.address, self.uuid)  # type: ignore[arg-type]
        info.__dict__["signature"] = "0x" + bytes(self.hotkey.sign(message)).hex()

    def wants_signed_answer(self, headers: Mapping[str, str]) -> bool:
        """Whether this answer is signed: the axon always does, or the request asks."""
        return self.sign_answers or headers.get(SIGN_ANSWER_HEADER) == "1"

    def sign_answer(
        self, outcome: Outcome, codec: Codec, nonce: int | None, dendrite_hotkey: str | None, uuid: str | None
    ) -> None:
        """Sign a successful unary answer to the verified request ``nonce``/``dendrite_hotkey``/``uuid``
        into ``outcome.synapse.axon.signature``, over what ``codec`` says the answer's hash covers.

        A format that sends the serialised reply (gRPC) has it serialised here, once, into
        ``outcome.reply`` (the bytes the transport sends and the hash covers).
        """
        synapse = outcome.synapse
        endpoint = outcome.endpoint
        assert endpoint is not None
        outcome.reply, body_hash = codec.answer_hash(endpoint, synapse)
        info = synapse.axon
        assert info is not None
        message = answer_message(nonce, dendrite_hotkey, self.address, uuid, body_hash)
        info.__dict__["signature"] = "0x" + bytes(self.hotkey.sign(message)).hex()

    def constant_metadata(self) -> tuple[tuple[str, str], ...]:
        """The ``bt_header_axon_*`` pairs that never change: version, uuid, hotkey."""
        if self._constant is None:
            self._constant = (
                (AXON_PREFIX + "version", str(self.version)),
                (AXON_PREFIX + "uuid", self.uuid),
                (AXON_PREFIX + "hotkey", self.address),
            )
        return self._constant
