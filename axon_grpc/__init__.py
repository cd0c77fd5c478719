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
    KeyfileError,
    NotVerifiedException,
    SchemaError,
    Status,
    SynapseException,
)
from .info import AxonInfo
from .keys import Keypair
from .nonces import InMemoryNonceStore, NonceStore
from .pipeline import log_and_handle_error
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
    "KeyfileError",
    "Keypair",
    "KeypairWallet",
    "NonceStore",
    "NotVerifiedException",
    "SchemaError",
    "Status",
    "Synapse",
    "SynapseException",
    "TerminalInfo",
    "VerifyPolicy",
    "Wallet",
    "log_and_handle_error",
]
