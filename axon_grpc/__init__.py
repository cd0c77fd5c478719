"""axon-grpc: the Bittensor Axon programming model served over gRPC.

``from axon_grpc import Axon, Dendrite, Synapse`` is all a miner or validator needs;
the submodules hold the pieces (keys, wallet, schema, pipeline, transport).
"""

from __future__ import annotations

from .auth import PROTOCOL_VERSION, V_7_2_0, VerifyPolicy
from .axon import Axon
from .config import Config
from .dendrite import Dendrite
from .errors import (
    AxonError,
    BlacklistedException,
    InternalServerError,
    InvalidAddress,
    InvalidRequestNameError,
    KeyfileError,
    NotVerifiedException,
    PostProcessException,
    PriorityException,
    RunException,
    SchemaError,
    Status,
    SynapseDendriteNoneException,
    SynapseException,
    SynapseParsingError,
    UnknownSynapseError,
)
from .info import AxonInfo
from .keys import Keypair
from .nonces import InMemoryNonceStore, NonceStore
from .registry import LocalRegistry
from .reporting import log_and_handle_error
from .streaming import StreamingResponse, StreamingSynapse
from .synapse import Synapse, TerminalInfo
from .wallet import KeypairWallet, Wallet

__version__ = "0.1.0"

__all__ = [
    "PROTOCOL_VERSION",
    "V_7_2_0",
    "Axon",
    "AxonError",
    "AxonInfo",
    "BlacklistedException",
    "Config",
    "Dendrite",
    "InMemoryNonceStore",
    "InternalServerError",
    "InvalidAddress",
    "InvalidRequestNameError",
    "KeyfileError",
    "Keypair",
    "KeypairWallet",
    "LocalRegistry",
    "NonceStore",
    "NotVerifiedException",
    "PostProcessException",
    "PriorityException",
    "RedisNonceStore",
    "RunException",
    "SchemaError",
    "Status",
    "StreamingResponse",
    "StreamingSynapse",
    "Synapse",
    "SynapseDendriteNoneException",
    "SynapseException",
    "SynapseParsingError",
    "TerminalInfo",
    "UnknownSynapseError",
    "VerifyPolicy",
    "Wallet",
    "log_and_handle_error",
]


def __getattr__(name: str) -> object:
    """``RedisNonceStore`` is imported on first use (the redis client is not needed otherwise)."""
    if name == "RedisNonceStore":
        from .redis_store import RedisNonceStore

        return RedisNonceStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
