"""``axon-grpc proto``: write the ``.proto`` of a miner's synapses for other languages."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Iterable, Mapping

from google.protobuf import descriptor_pb2

from axon_grpc.errors import SchemaError
from axon_grpc.schema import build_service_file, render_proto, schema_for
from axon_grpc.schema.contract import EMITTED_HEADER
from axon_grpc.streaming import streaming_schemas
from axon_grpc.synapse import Synapse

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
                c
                for c in vars(module).values()
                if inspect.isclass(c)
                and issubclass(c, Synapse)
                and c is not Synapse
                and c.__module__ == module.__name__
            ]
            if not classes:
                raise TargetError(f"{target}: module {module_name} defines no Synapse subclass")
        found.extend(c for c in classes if c not in found)
    return found


#: File options for the common code generators, and their defaults (``axon-grpc proto``
#: flags override them). With ``paths=source_relative`` Go only uses the package name
#: after ``;``; set the import path of your own module when other files import this one.
DEFAULT_OPTIONS: dict[str, str | bool] = {
    "go_package": "axon/v1;axonv1",
    "java_package": "axon.v1",
    "java_multiple_files": True,
    "csharp_namespace": "Axon.V1",
    "php_namespace": "Axon\\V1",
    "ruby_package": "Axon::V1",
    "objc_class_prefix": "AXN",
}

#: What each ``{Name}Stream`` message says about itself in the emitted file.
STREAM_COMMENT = (
    " One message of the {name} stream: exactly one of `chunk` (each chunk the forward\n"
    " yields, in order) or `final` (last: the synapse's fields after the forward). The\n"
    " axon's status follows in the trailing metadata.\n"
)


def file_options(**overrides: str | bool | None) -> dict[str, str | bool]:
    """:data:`DEFAULT_OPTIONS` with ``overrides`` applied (``None`` or ``""`` drops an option)."""
    options = dict(DEFAULT_OPTIONS)
    for name, value in overrides.items():
        if name not in descriptor_pb2.FileOptions.DESCRIPTOR.fields_by_name:
            raise TargetError(f"{name!r} is not a protobuf file option")
        if value is None or value == "":
            options.pop(name, None)
        else:
            options[name] = value
    return options


def render(classes: Iterable[type[Synapse]], options: Mapping[str, str | bool] | None = None) -> str:
    """The ``.proto`` text for ``classes`` (raises SchemaError naming class and field).

    The file always holds the ping method every axon serves, ``Synapse`` (an empty
    message), first; ``options`` are the file options (default :data:`DEFAULT_OPTIONS`).
    """
    classes = [Synapse, *(c for c in classes if c is not Synapse)]
    fdp = build_service_file([schema_for(cls) for cls in classes], streaming=streaming_schemas(classes))
    for name, value in (DEFAULT_OPTIONS if options is None else options).items():
        setattr(fdp.options, name, value)
    for index, message in enumerate(fdp.message_type):
        if message.name.endswith("Stream") and message.name[: -len("Stream")] in {c.__name__ for c in classes}:
            location = fdp.source_code_info.location.add()
            location.path.extend((4, index))  # FileDescriptorProto.message_type
            location.leading_comments = STREAM_COMMENT.format(name=message.name[: -len("Stream")])
    return render_proto(fdp, header_comment=EMITTED_HEADER)


def write(targets: Iterable[str], out: Path, options: Mapping[str, str | bool] | None = None) -> Path:
    """Emit the file for ``targets`` under ``out``; returns its path."""
    text = render(load_targets(targets), options)
    path = out / EMITTED_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


__all__ = [
    "DEFAULT_OPTIONS",
    "EMITTED_PATH",
    "SchemaError",
    "TargetError",
    "file_options",
    "load_targets",
    "render",
    "write",
]
