"""The axon's own terminal info: what every answer says about the server, and its signature.

Built from the axon's state only (never from anything a caller sent): its advertised
ip and port, protocol version, instance uuid, hotkey, a fresh nonce per answer, the
status and the process time.
Error answers are signed, as the legacy axon signs them; the constant part of the
trailing metadata is computed once.
"""

from __future__ import annotations

import time
from typing import Callable

from ._types import Signer
from .auth import response_message
from .synapse import AXON_PREFIX, Synapse, TerminalInfo, terminal_info


class AxonTerminal:
    """The axon's identity as answers carry it. ``hotkey`` is resolved on first use."""

    def __init__(
        self, hotkey: Callable[[], Signer], uuid: str, version: int, address: Callable[[], tuple[str, int]]
    ) -> None:
        self._resolve = hotkey
        self._hotkey: Signer | None = None
        self._resolve_address = address
        self._address: tuple[str, int] | None = None
        self.uuid = uuid
        self.version = version
        self._constant: tuple[tuple[str, str], ...] | None = None

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
            status_code=status, status_message=message, process_time=process_time, ip=ip, port=port,
            version=self.version, nonce=time.time_ns(), uuid=self.uuid, hotkey=self.address,
        )

    def stamp(
        self, synapse: Synapse, given: TerminalInfo | None, status: int, message: str, process_time: float
    ) -> None:
        """Set the answer's status on ``synapse.axon``: in ``given`` (the info the request's
        synapse was built with, its nonce from then) when the forward kept it, else in a
        new one of the axon's own."""
        values = synapse.__dict__
        if given is not None and values.get("axon") is given:
            given.__dict__.update(status_code=status, status_message=message, process_time=process_time)
        else:
            values["axon"] = self.info(status, message, process_time)

    def sign(self, synapse: Synapse) -> None:
        """Sign ``{axon_nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}`` into ``synapse.axon``."""
        info = synapse.axon
        assert info is not None
        dendrite = synapse.dendrite.hotkey if synapse.dendrite is not None else None
        message = response_message(info.nonce, dendrite, self.address, self.uuid)  # type: ignore[arg-type]
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
