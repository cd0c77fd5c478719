"""axon-grpc: the Bittensor Axon programming model served over gRPC.

``from axon_grpc import Axon, Dendrite, Synapse`` is all a miner or validator needs.
The pieces live in one sub-package per family:

- ``server``: the Axon and the request path (pipeline, admission, forwarding, terminal info);
- ``auth``: keys, wallets, the two signing schemes, nonce stores;
- ``client``: the Dendrite and its transports;
- ``transports``: wire formats (``grpc.aio``, gRPC over ASGI, legacy JSON bodies);
- ``edge``: Envoy processes and their configuration;
- ``metrics``, ``schema`` (synapse <-> protobuf), ``cli``;

with the model shared by all of them at the top: ``synapse``, ``streaming``, ``errors``,
``info``, ``registry``, ``logs`` and ``testing``. The HTTP bridge for legacy dendrites is
the top-level ``bridge`` package. Modules that moved keep their old import paths
(:mod:`axon_grpc._moved`).
"""

from __future__ import annotations

from axon_grpc import _moved
from axon_grpc.auth.keys import Keypair
from axon_grpc.auth.legacy import PROTOCOL_VERSION, V_7_2_0, VerifyPolicy
from axon_grpc.auth.nonces import InMemoryNonceStore, NonceStore
from axon_grpc.auth.wallet import KeypairWallet, Wallet
from axon_grpc.client.dendrite import Dendrite
from axon_grpc.errors import (
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
from axon_grpc.info import AxonInfo
from axon_grpc.registry import LocalRegistry
from axon_grpc.server.axon import Axon
from axon_grpc.server.config import Config
from axon_grpc.server.reporting import log_and_handle_error
from axon_grpc.streaming import StreamingResponse, StreamingSynapse
from axon_grpc.synapse import Synapse, TerminalInfo

__version__ = "0.1.0"

_moved.install()

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
        from axon_grpc.auth.redis_store import RedisNonceStore

        return RedisNonceStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
