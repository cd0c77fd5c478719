"""Import paths of modules that moved into sub-packages keep working.

``import axon_grpc.keys`` (and ``from axon_grpc.keys import Keypair``) gives the very
module now at ``axon_grpc.auth.keys``: one module object under two names, so attributes,
``isinstance`` checks and patches agree. New code imports the new paths; the table below is
the record of what moved where. ``axon_grpc.auth``, ``axon_grpc.metrics`` and
``axon_grpc.cli`` became packages of the same name: their ``__init__`` keeps the old
module's names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: Old module path -> the module's home now.
MOVED: dict[str, str] = {
    "axon_grpc.admission": "axon_grpc.server.admission",
    "axon_grpc.axon": "axon_grpc.server.axon",
    "axon_grpc.call": "axon_grpc.server.call",
    "axon_grpc.config": "axon_grpc.server.config",
    "axon_grpc.drain": "axon_grpc.server.drain",
    "axon_grpc.endpoints": "axon_grpc.server.endpoints",
    "axon_grpc.executor": "axon_grpc.server.executor",
    "axon_grpc.forwarding": "axon_grpc.server.forwarding",
    "axon_grpc.loop_thread": "axon_grpc.server.loop_thread",
    "axon_grpc.pipeline": "axon_grpc.server.pipeline",
    "axon_grpc.reporting": "axon_grpc.server.reporting",
    "axon_grpc.signatures": "axon_grpc.server.hooks",
    "axon_grpc.terminal": "axon_grpc.server.terminal",
    "axon_grpc.workers": "axon_grpc.server.workers",
    "axon_grpc.btauth": "axon_grpc.auth.btauth",
    "axon_grpc.credentials": "axon_grpc.auth.credentials",
    "axon_grpc.keys": "axon_grpc.auth.keys",
    "axon_grpc.nonces": "axon_grpc.auth.nonces",
    "axon_grpc.redis_store": "axon_grpc.auth.redis_store",
    "axon_grpc.verifier": "axon_grpc.auth.verifier",
    "axon_grpc.wallet": "axon_grpc.auth.wallet",
    "axon_grpc.dendrite": "axon_grpc.client.dendrite",
    "axon_grpc.dendrite_answer": "axon_grpc.client.answer",
    "axon_grpc.dendrite_grpc": "axon_grpc.client.grpc_transport",
    "axon_grpc.dendrite_http": "axon_grpc.client.http_transport",
    "axon_grpc.dendrite_signing": "axon_grpc.client.signing",
    "axon_grpc.tls": "axon_grpc.client.tls",
    "axon_grpc.discovery": "axon_grpc.transports.aio_discovery",
    "axon_grpc.grpc_codec": "axon_grpc.transports.grpc_codec",
    "axon_grpc.json_body": "axon_grpc.transports.json_body",
    "axon_grpc.transport": "axon_grpc.transports.grpc_aio",
    "axon_grpc.edge.grpc_asgi": "axon_grpc.transports.grpc_asgi",
    "axon_grpc.edge.health": "axon_grpc.transports.asgi_health",
    "axon_grpc.edge.reflection": "axon_grpc.transports.asgi_reflection",
    "axon_grpc.edge.wire": "axon_grpc.transports.grpc_wire",
    "axon_grpc.metrics_listener": "axon_grpc.metrics.listener",
    "axon_grpc.top_callers": "axon_grpc.metrics.top_callers",
    "axon_grpc.contract": "axon_grpc.schema.contract",
    "axon_grpc.codegen": "axon_grpc.cli.codegen",
    "axon_grpc.commands": "axon_grpc.cli.commands",
    "axon_grpc.demo": "axon_grpc.cli.demo",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old name with the module at its new home (no second copy is executed)."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        # The import system stamps the alias's spec on the module it gets back: keep the real one.
        module.__dict__.setdefault("__moved_spec__", module.__spec__)
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = module.__dict__.pop("__moved_spec__", module.__spec__)


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
