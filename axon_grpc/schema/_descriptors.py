"""DescriptorProtos, FileDescriptorProtos and descriptor pools built from an analysis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from google.protobuf import descriptor_pb2, descriptor_pool

from axon_grpc.errors import SchemaError
from axon_grpc.schema._types import (
    _ENUM,
    _F,
    _IDENT,
    _JSON,
    _LABEL_OPTIONAL,
    _LABEL_REPEATED,
    _MAP,
    _MODEL,
    _OPT_MAP,
    _OPT_REPEATED,
    _OPTIONAL,
    _REPEATED,
    _SCALAR,
    _SCALARS,
    DEFAULT_PACKAGE,
    DEFAULT_SERVICE,
    _Analysis,
    _Elem,
    _ModelSpec,
    _type_repr,
)

if TYPE_CHECKING:
    from axon_grpc.schema._schema import SynapseSchema

# DescriptorProto / FileDescriptorProto field numbers used in SourceCodeInfo paths
_FILE_MESSAGE_TYPE: Final = 4
_MSG_FIELD: Final = 2
_MSG_NESTED_TYPE: Final = 3


def _map_entry_name(field_name: str) -> str:
    """protoc's name for the implicit map entry message of a map field."""
    out: list[str] = []
    cap = True
    for ch in field_name:
        if ch == "_":
            cap = True
        elif cap:
            out.append(ch.upper() if "a" <= ch <= "z" else ch)
            cap = False
        else:
            out.append(ch)
    return "".join(out) + "Entry"


class _DescriptorWriter:
    """Renders an analysis as a DescriptorProto for a given package."""

    def __init__(self, analysis: _Analysis, package: str) -> None:
        self.a = analysis
        self.root_full = f"{'.' + package if package else ''}.{analysis.root_name}"
        self.comments: list[tuple[list[int], str]] = []  # paths relative to the message

    def _type_name(self, elem: _Elem) -> str:
        if elem.kind == _ENUM:
            return f"{self.root_full}.{self.a.enums[elem.py].name}"
        return f"{self.root_full}.{self.a.models[elem.py].name}"

    def _set_elem(self, fp: descriptor_pb2.FieldDescriptorProto, elem: _Elem) -> None:
        if elem.kind == _SCALAR:
            fp.type = _SCALARS[elem.py][1]
        else:
            fp.type = _F.TYPE_ENUM if elem.kind == _ENUM else _F.TYPE_MESSAGE
            fp.type_name = self._type_name(elem)

    def _add_field(
        self,
        mp: descriptor_pb2.DescriptorProto,
        full: str,
        name: str,
        number: int,
        shape: str,
        elem: _Elem | None,
        wrapper: str | None,
    ) -> None:
        fp = mp.field.add(name=name, number=number, label=_LABEL_OPTIONAL)
        if shape == _JSON:
            fp.type = _F.TYPE_BYTES
        elif shape in (_OPT_REPEATED, _OPT_MAP):
            fp.type = _F.TYPE_MESSAGE
            fp.type_name = f"{self.root_full}.{wrapper}"
        elif shape == _MAP:
            assert elem is not None
            entry_name = _map_entry_name(name)
            entry = mp.nested_type.add(name=entry_name)
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, label=_LABEL_OPTIONAL, type=_F.TYPE_STRING)
            self._set_elem(entry.field.add(name="value", number=2, label=_LABEL_OPTIONAL), elem)
            fp.label = _LABEL_REPEATED
            fp.type = _F.TYPE_MESSAGE
            fp.type_name = f"{full}.{entry_name}"
        else:
            assert elem is not None
            self._set_elem(fp, elem)
            if shape == _REPEATED:
                fp.label = _LABEL_REPEATED
            elif shape == _OPTIONAL and elem.kind != _MODEL:
                fp.proto3_optional = True
                fp.oneof_index = len(mp.oneof_decl)
                mp.oneof_decl.add(name=f"_{name}")

    def _fill(self, mp: descriptor_pb2.DescriptorProto, full: str, spec: _ModelSpec, base: list[int]) -> None:
        for i, f in enumerate(spec.fields):
            self._add_field(mp, full, f.name, f.number, f.shape, f.elem, f.wrapper)
            if f.shape == _JSON:
                self.comments.append(([*base, _MSG_FIELD, i], f" JSON-encoded {_type_repr(f.annotation)}\n"))

    def message(self) -> descriptor_pb2.DescriptorProto:
        a = self.a
        root = descriptor_pb2.DescriptorProto(name=a.root_name)
        for spec in a.models.values():
            index = len(root.nested_type)
            nested = root.nested_type.add(name=spec.name)
            self._fill(nested, f"{self.root_full}.{spec.name}", spec, [_MSG_NESTED_TYPE, index])
        for wname, (shape, elem) in a.wrappers.items():
            wrapper = root.nested_type.add(name=wname)
            inner = _REPEATED if shape == _OPT_REPEATED else _MAP
            self._add_field(wrapper, f"{self.root_full}.{wname}", "values", 1, inner, elem, None)
        for es in a.enums.values():
            ep = root.enum_type.add(name=es.name)
            for _, number, vname in es.members:
                ep.value.add(name=vname, number=number)
        self._fill(root, self.root_full, a.root_spec, [])
        return root


def _check_scope(mp: descriptor_pb2.DescriptorProto, where: str, owner: str) -> None:
    """Refuse two symbols of one name in a message's scope, as protoc does.

    Fields, nested messages, enums, oneofs and (C++ scoping) enum values all share the
    scope of the enclosing message; descriptor pools do not check every case.
    """
    seen: dict[str, str] = {}
    symbols = [
        *((f.name, "field") for f in mp.field),
        *((n.name, "message") for n in mp.nested_type),
        *((e.name, "enum") for e in mp.enum_type),
        *((v.name, f"value of enum {e.name}") for e in mp.enum_type for v in e.value),
        *((o.name, "oneof") for o in mp.oneof_decl),
    ]
    for name, kind in symbols:
        prior = seen.get(name)
        if prior is not None:
            raise SchemaError(
                f"{owner}: {name!r} is both a {prior} and a {kind} in message {where}; rename one of them"
            )
        seen[name] = kind
    for n in mp.nested_type:
        _check_scope(n, f"{where}.{n.name}", owner)


def _new_file(name: str, package: str) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")


def _add_comments(fdp: descriptor_pb2.FileDescriptorProto, index: int, comments: list[tuple[list[int], str]]) -> None:
    for path, text in comments:
        loc = fdp.source_code_info.location.add()
        loc.path.extend([_FILE_MESSAGE_TYPE, index, *path])
        loc.span.extend([0, 0, 0])  # positions are unknown; the shape must be valid
        loc.leading_comments = text


def _pool_with(fdp: descriptor_pb2.FileDescriptorProto, what: str) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    try:
        pool.Add(fdp)
    except Exception as exc:
        raise SchemaError(f"{what}: protobuf rejected the generated descriptor: {exc}") from exc
    return pool


# ------------------------------------------------------------------------ service file


def _check_dotted(value: str, what: str, allow_empty: bool = False) -> None:
    if value == "" and allow_empty:
        return
    if not all(_IDENT.fullmatch(part) for part in value.split(".")):
        raise SchemaError(f"{what} {value!r} is not a valid protobuf name")


def build_service_file(
    schemas: Sequence[SynapseSchema],
    *,
    package: str = DEFAULT_PACKAGE,
    service: str = DEFAULT_SERVICE,
    streaming: Mapping[str, SynapseSchema] | None = None,
) -> descriptor_pb2.FileDescriptorProto:
    """One file with every schema's message and ``service {service}`` with one rpc each.

    ``rpc Name(Name) returns (Name)``. ``streaming`` maps a synapse name to the schema
    of its chunk message (``NameChunk``); such a method is
    ``rpc Name(Name) returns (stream NameStream)`` where each ``NameStream`` carries
    either ``chunk`` (field 1) or, last, ``final`` (field 2, the synapse's fields).
    The file is checked by loading it into a fresh descriptor pool.
    """
    streaming = dict(streaming or {})
    _check_dotted(package, "package", allow_empty=True)
    _check_dotted(service, "service")
    if "." in service:
        raise SchemaError(f"service {service!r} is not a valid protobuf name")
    seen: dict[str, SynapseSchema] = {}
    for s in [*schemas, *streaming.values()]:
        prior = seen.get(s.name)
        if prior is not None and prior is not s:
            raise SchemaError(f"duplicate message name {s.name!r}: {_type_repr(prior.cls)} and {_type_repr(s.cls)}")
        seen[s.name] = s
    unknown = sorted(set(streaming) - {s.name for s in schemas})
    if unknown:
        raise SchemaError(f"streaming names no attached synapse: {', '.join(unknown)}")

    path = f"{package.replace('.', '/')}/" if package else ""
    fdp = _new_file(f"{path}{service.lower()}.proto", package)
    if service in seen:
        raise SchemaError(f"message {service!r} has the same name as the service; rename it")
    prefix = f".{package}." if package else "."
    svc = fdp.service.add(name=service)
    for s in schemas:
        _add_message(fdp, s, package)
        output = s.name
        chunk = streaming.get(s.name)
        if chunk is not None:
            output = f"{s.name}Stream"
            if output in seen:
                raise SchemaError(f"duplicate message name {output!r}: it frames the stream of {s.name}")
            _add_message(fdp, chunk, package)
            frame = fdp.message_type.add(name=output)
            for number, (field, type_name) in enumerate((("chunk", chunk.name), ("final", s.name)), 1):
                frame.field.add(
                    name=field,
                    number=number,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                    type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                    type_name=f"{prefix}{type_name}",
                )
        method = svc.method.add(name=s.name, input_type=f"{prefix}{s.name}", output_type=f"{prefix}{output}")
        if chunk is not None:
            method.server_streaming = True
    _pool_with(fdp, f"{package or '<no package>'}.{service}")
    return fdp


def _add_message(fdp: descriptor_pb2.FileDescriptorProto, schema: SynapseSchema, package: str) -> None:
    message, comments = schema._message_proto(package)
    index = len(fdp.message_type)
    fdp.message_type.add().CopyFrom(message)
    _add_comments(fdp, index, comments)
