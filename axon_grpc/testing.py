"""A test harness: an axon on a free loopback port and a Dendrite connected to it.

::

    async with serve_axon(forward) as h:
        result = await h.call(Dummy(input=3))
        assert result.output == 6
"""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Mapping, Union

from .axon import Axon
from .dendrite import Dendrite
from .info import AxonInfo
from .synapse import Synapse
from .wallet import KeypairWallet

#: A forward function, or the keyword arguments of one ``Axon.attach`` call.
Attachment = Union[Callable[..., Any], Mapping[str, Any]]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class AxonHarness:
    """A started axon, a dendrite, and the info the dendrite calls."""

    axon: Axon
    dendrite: Dendrite
    info: AxonInfo

    async def call(self, synapse: Synapse, timeout: float = 12.0, deserialize: bool = False) -> Any:
        """One call through the dendrite; returns the synapse with its status filled."""
        return await self.dendrite.call(self.info, synapse, timeout=timeout, deserialize=deserialize)


def build_axon(*attachments: Attachment, wallet: Any = None, **axon_kwargs: Any) -> Axon:
    """An unstarted axon on a free loopback port with ``attachments`` attached."""
    axon_kwargs.setdefault("ip", "127.0.0.1")
    axon_kwargs.setdefault("external_ip", "127.0.0.1")
    axon_kwargs.setdefault("port", free_port())
    axon = Axon(wallet=wallet or KeypairWallet.generate(), **axon_kwargs)
    for attachment in attachments:
        if isinstance(attachment, Mapping):
            axon.attach(**attachment)
        else:
            axon.attach(forward_fn=attachment)
    return axon


@asynccontextmanager
async def serve_axon(
    *attachments: Attachment,
    wallet: Any = None,
    client_wallet: Any = None,
    **axon_kwargs: Any,
) -> AsyncIterator[AxonHarness]:
    """Serve ``attachments`` on the running loop for the duration of the block."""
    axon = build_axon(*attachments, wallet=wallet, **axon_kwargs)
    await axon.start_async()
    dendrite = Dendrite(wallet=client_wallet or KeypairWallet.generate())
    try:
        yield AxonHarness(axon=axon, dendrite=dendrite, info=axon.info())
    finally:
        await dendrite.aclose()
        await axon.stop_async(grace=None)
