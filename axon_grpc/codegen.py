"""``axon-grpc proto``: write the ``.proto`` of a miner's synapses for other languages."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Iterable

from .contract import EMITTED_HEADER
from .errors import SchemaError
from .schema import emit_proto, schema_for
from .streaming import streaming_schemas
from .synapse import Synapse

#: Where the emitted file goes under the output folder (its package path).
EMITTED_PATH = Path("axon") / "v1" / "axon_service.proto"


class TargetError(ValueError):
    """A ``module:Class`` target that does not name a Synapse subclass."""


def load_targets(targets: Iterable[str]) -> list[type[Synapse]]:
    """Synapse classes from ``module:Class`` (or ``module`` for every synapse it defines)."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    found: list[type[Synapse]] = []
    for target in targets:
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise TargetError(f"{target}: cannot import module {module_name!r}: {e}") from None
        if class_name:
            cls = getattr(module, class_name, None)
            if not (inspect.isclass(cls) and issubclass(cls, Synapse)):
                raise TargetError(f"{target}: {class_name!r} is not a Synapse subclass in {module_name}")
            classes = [cls]
        else:
            classes = [
                c for c in vars(module).values()
                if inspect.isclass(c) and issubclass(c, Synapse) and c is not Synapse and c.__module__ == module.__name__
            ]
            if not classes:
                raise TargetError(f"{target}: module {module_name} defines no Synapse subclass")
        found.extend(c for c in classes if c not in found)
    return found


def render(classes: Iterable[type[Synapse]]) -> str:
    """The ``.proto`` text for ``classes`` (raises SchemaError naming class and field)."""
    classes = list(classes)
    return emit_proto(
        [schema_for(cls) for cls in classes], header_comment=EMITTED_HEADER, streaming=streaming_schemas(classes)
    )


def write(targets: Iterable[str], out: Path) -> Path:
    """Emit the file for ``targets`` under ``out``; returns its path."""
    text = render(load_targets(targets))
    path = out / EMITTED_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


__all__ = ["EMITTED_PATH", "SchemaError", "TargetError", "load_targets", "render", "write"]
