"""The HTTP compatibility bridge: legacy Bittensor dendrites (SDK 7.2-10.5) reach an axon.

Turned on by ``Axon(..., http_port=8092)`` (``--axon.http_port``,
``BT_AXON_HTTP_PORT``): the axon builds an :class:`HttpBridge` through the
``axon_grpc.transports`` entry point and serves it beside gRPC on one event loop.
The seed's names live here: :class:`AxonMiddleware`, :class:`FastAPIThreadedServer`,
:func:`create_error_response` and :func:`log_and_handle_error`.
"""

from __future__ import annotations

from axon_grpc.server.reporting import log_and_handle_error

from .app import HttpBridge
from .middleware import AxonMiddleware
from .responses import create_error_response
from .server import FastAPIThreadedServer

__all__ = [
    "AxonMiddleware",
    "FastAPIThreadedServer",
    "HttpBridge",
    "create_error_response",
    "log_and_handle_error",
]
