"""The package's shape: the public facade, the import paths kept for moved modules, and an
import graph without cycles."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import axon_grpc
from axon_grpc._moved import MOVED

PACKAGE = Path(axon_grpc.__file__).parent

#: What ``from axon_grpc import *`` gives: the names a miner or validator needs.
PUBLIC = {
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
}


def test_facade_exports_exactly_the_public_names() -> None:
    assert set(axon_grpc.__all__) == PUBLIC
    for name in axon_grpc.__all__:
        value = getattr(axon_grpc, name)
        assert value is not None
        if isinstance(value, type):
            # Each class is defined in the family it belongs to, not in the facade.
            assert value.__module__.startswith("axon_grpc."), (name, value.__module__)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_import_path_is_the_moved_module(old: str) -> None:
    new = importlib.import_module(MOVED[old])
    assert importlib.import_module(old) is new
    # The module keeps its own identity: its spec names its home, not the alias.
    assert new.__spec__ is not None and new.__spec__.name == MOVED[old]
    assert new.__name__ == MOVED[old]


def test_from_import_of_a_moved_name_works() -> None:
    from axon_grpc.keys import Keypair as OldKeypair  # type: ignore[import-not-found]
    from axon_grpc.pipeline import Pipeline as OldPipeline  # type: ignore[import-not-found]

    from axon_grpc.auth.keys import Keypair
    from axon_grpc.server.pipeline import Pipeline

    assert OldKeypair is Keypair and OldPipeline is Pipeline


def test_modules_that_became_packages_keep_their_names() -> None:
    from axon_grpc.auth import V_7_2_0, VerifyPolicy, grpc_body_hash  # the legacy scheme's module was here
    from axon_grpc.auth.legacy import grpc_body_hash as legacy_hash
    from axon_grpc.metrics import PrometheusMetrics
    from axon_grpc.metrics.observer import PrometheusMetrics as Observed

    assert grpc_body_hash is legacy_hash and PrometheusMetrics is Observed
    assert V_7_2_0 == 7_002_000 and VerifyPolicy.__module__ == "axon_grpc.auth.legacy"
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        axon_grpc.auth.nothing_here  # noqa: B018


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules this one imports when it is imported (not in functions, not for types)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.Import, ast.ImportFrom, ast.Try, ast.If)) else ():
            if isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names)
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - sub.level + 1]
                    base = ".".join(anchor + ([sub.module] if sub.module else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in sub.names)
    return {m for m in found if m in known and m != name}


def test_import_graph_has_no_cycle() -> None:
    files = {
        _module_name(p): p for p in PACKAGE.rglob("*.py") if "_generated" not in p.parts and "bench" not in p.parts
    }
    graph = {name: _top_level_imports(path, name, set(files)) for name, path in files.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []
    # The graph is real: the Axon builds its collaborators by the composition root, which
    # imports the pipeline.
    assert "axon_grpc.server.compose" in graph["axon_grpc.server.axon"]
    assert "axon_grpc.server.pipeline" in graph["axon_grpc.server.compose"]


#: The transport-neutral core: it names no wire format (issue 24).
CORE = (
    "server/call.py",
    "server/pipeline.py",
    "server/admission.py",
    "server/forwarding.py",
    "server/stream_writer.py",
)
WIRE = ("grpc", "axon_grpc.transports", "bridge", "fastapi", "starlette", "pyvoy")


def _all_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_core_names_no_transport_and_errors_no_grpc() -> None:
    for relative in CORE:
        path = PACKAGE / relative
        wired = {m for m in _all_imports(path) if m.split(".")[0] in WIRE or m.startswith(WIRE)}
        assert wired == set(), relative
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        constants = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not names & {"GRPC", "HTTP", "GRPC_METHOD"} and not constants & {"grpc", "http"}, relative
    assert not any(m.split(".")[0] == "grpc" for m in _all_imports(PACKAGE / "errors.py"))
