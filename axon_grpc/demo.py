"""The demo: an axon on the embedded defaults, called once by a Dendrite."""

from __future__ import annotations

import logging
from typing import Any, Optional

from .axon import Axon
from .config import Config
from .dendrite import Dendrite
from .synapse import Synapse

logger = logging.getLogger("axon_grpc")


class Dummy(Synapse):
    """The example synapse: the request carries ``input``, the miner fills ``output``."""

    input: int
    output: Optional[int] = None

    required_hash_fields = ("input",)

    def deserialize(self) -> Optional[int]:
        return self.output


def forward(synapse: Dummy) -> Dummy:
    synapse.output = synapse.input * 2
    return synapse


def blacklist(synapse: Dummy) -> tuple[bool, str]:
    return synapse.input == 13, "input 13 is blacklisted"


def priority(synapse: Dummy) -> float:
    return 1.0


def run_demo(config: Config, value: int = 21, out: Any = print) -> int:
    """Start an axon, call it once over gRPC, print the round trip; 0 on success."""
    axon = Axon(config=config)
    axon.attach(forward_fn=forward, blacklist_fn=blacklist, priority_fn=priority)
    axon.start()
    try:
        out(f"axon   {axon.wallet.hotkey.ss58_address} serving {list(axon.endpoints)} on grpc {axon.full_address}")
        info = axon.info()
        # Call the bound address (the advertised external ip may not be reachable here).
        host = axon.ip.strip("[]")
        info.ip = "127.0.0.1" if host in ("", "::", "0.0.0.0") else host
        info.ip_type = 6 if ":" in info.ip else 4
        dendrite = Dendrite()
        result = dendrite.query(info, Dummy(input=value), timeout=12.0, deserialize=False)
        dendrite.close_session()
        d = result.dendrite
        out(f"grpc   Dummy(input={value}) -> output={result.output} "
            f"status={d.status_code} {d.status_message!r} in {d.process_time * 1e3:.1f} ms")
        return 0 if result.is_success and result.output == value * 2 else 1
    finally:
        axon.stop()
