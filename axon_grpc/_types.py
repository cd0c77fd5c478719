"""Names for the callables a miner attaches, shared by the whole package."""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol, Union

from axon_grpc.synapse import Synapse

#: ``forward(synapse) -> synapse``, sync or async.
ForwardFn = Callable[[Any], Union[Synapse, Awaitable[Synapse]]]
#: ``blacklist(synapse) -> (blacklisted, reason)`` (a bare bool is accepted too).
BlacklistFn = Callable[[Any], Union[tuple[bool, str], bool, Awaitable[Any]]]
#: ``priority(synapse) -> float``; higher runs sooner when the pool is saturated.
PriorityFn = Callable[[Any], Union[float, Awaitable[float]]]
#: ``verify(synapse) -> None``; raise to refuse (runs after the signature check).
VerifyFn = Callable[[Any], Union[Awaitable[None], None]]


class Signer(Protocol):
    """A hotkey that can sign: a :class:`~axon_grpc.auth.keys.Keypair` or a Bittensor keypair."""

    ss58_address: str

    def sign(self, data: Any) -> bytes: ...


class WalletLike(Protocol):
    """What an Axon or a Dendrite needs of a wallet: a ``hotkey`` that signs (a Bittensor
    wallet, :class:`~axon_grpc.auth.wallet.Wallet`, :class:`~axon_grpc.auth.wallet.KeypairWallet`)."""

    @property
    def hotkey(self) -> Signer: ...
