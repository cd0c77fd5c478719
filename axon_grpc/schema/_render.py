"""``.proto`` text rendering of FileDescriptorProtos."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Final

from google.protobuf import descriptor_pb2

from axon_grpc.schema._descriptors import _FILE_MESSAGE_TYPE, _MSG_FIELD, _MSG_NESTED_TYPE, build_service_file
from axon_grpc.schema._schema import SynapseSchema
from axon_grpc.schema._types import _F, _LABEL_REPEATED, DEFAULT_PACKAGE, DEFAULT_SERVICE

# every scalar FieldDescriptorProto type -> its .proto spelling (for rendering any file)
_PROTO_SCALAR_NAMES: Final[dict[int, str]] = {
    _F.TYPE_DOUBLE: "double",
    _F.TYPE_FLOAT: "float",
    _F.TYPE_INT64: "int64",
    _F.TYPE_UINT64: "uint64",
    _F.TYPE_INT32: "int32",
    _F.TYPE_FIXED64: "fixed64",
    _F.TYPE_FIXED32: "fixed32",
    _F.TYPE_BOOL: "bool",
    _F.TYPE_STRING: "string",
    _F.TYPE_BYTES: "bytes",
    _F.TYPE_UINT32: "uint32",
    _F.TYPE_SFIXED32: "sfixed32",
    _F.TYPE_SFIXED64: "sfixed64",
    _F.TYPE_SINT32: "sint32",
    _F.TYPE_SINT64: "sint64",
}


def _comment_lines(text: str, indent: str) -> list[str]:
    lines = text[:-1] if text.endswith("\n") else text
    return [f"{indent}//{line}".rstrip() for line in lines.split("\n")]


class _Renderer:
    def __init__(self, fdp: descriptor_pb2.FileDescriptorProto) -> None:
        self.fdp = fdp
        self.prefix = f".{fdp.package}." if fdp.package else "."
        self.comments = {
            tuple(loc.path): loc.leading_comments for loc in fdp.source_code_info.location if loc.leading_comments
        }
        self.lines: list[str] = []
        self.top_level = {
            *(m.name for m in fdp.message_type),
            *(e.name for e in fdp.enum_type),
            *(v.name for e in fdp.enum_type for v in e.value),
            *(s.name for s in fdp.service),
        }

    def _ref(self, type_name: str) -> str:
        if type_name.startswith(self.prefix):
            return type_name[len(self.prefix) :]
        return type_name

    def _rpc_ref(self, type_name: str) -> str:
        """A method's message type, package-qualified.

        A bare ``Dummy`` in ``rpc Dummy(Dummy)`` would resolve to the method itself, so
        the name keeps its package; if the package's first component is also a top-level
        name the package cannot be reached that way and the name stays fully qualified.
        """
        if not self.fdp.package or self.fdp.package.split(".")[0] in self.top_level:
            return type_name
        return type_name[1:]

    def _comment(self, path: tuple[int, ...], indent: str) -> None:
        text = self.comments.get(path)
        if text:
            self.lines.extend(_comment_lines(text, indent))

    def _type(self, f: descriptor_pb2.FieldDescriptorProto) -> str:
        if f.type in (_F.TYPE_MESSAGE, _F.TYPE_ENUM, _F.TYPE_GROUP):
            return self._ref(f.type_name)
        return _PROTO_SCALAR_NAMES[f.type]

    def _message(
        self,
        m: descriptor_pb2.DescriptorProto,
        full: str,
        path: tuple[int, ...],
        indent: str,
    ) -> None:
        inner = indent + "  "
        entries = {f"{full}.{n.name}": n for n in m.nested_type if n.options.map_entry}
        self._comment(path, indent)
        self.lines.append(f"{indent}message {m.name} {{")
        body_start = len(self.lines)
        for i, n in enumerate(m.nested_type):
            if not n.options.map_entry:
                self._message(n, f"{full}.{n.name}", (*path, _MSG_NESTED_TYPE, i), inner)
        for i, e in enumerate(m.enum_type):
            self._comment((*path, 4, i), inner)
            self.lines.append(f"{inner}enum {e.name} {{")
            for v in e.value:
                self.lines.append(f"{inner}  {v.name} = {v.number};")
            self.lines.append(f"{inner}}}")
        for i, f in enumerate(m.field):
            self._comment((*path, _MSG_FIELD, i), inner)
            entry = entries.get(f.type_name) if f.label == _LABEL_REPEATED else None
            if entry is not None:
                key, value = entry.field[0], entry.field[1]
                decl = f"map<{self._type(key)}, {self._type(value)}>"
            else:
                label = ""
                if f.label == _LABEL_REPEATED:
                    label = "repeated "
                elif f.proto3_optional:
                    label = "optional "
                decl = f"{label}{self._type(f)}"
            self.lines.append(f"{inner}{decl} {f.name} = {f.number};")
        if len(self.lines) == body_start:
            self.lines[-1] += "}"
        else:
            self.lines.append(f"{indent}}}")

    def render(self, header_comment: str) -> str:
        fdp = self.fdp
        out = self.lines
        header = header_comment.strip("\n")
        if header:
            out.extend(_comment_lines(" " + header.replace("\n", "\n "), ""))
            out.append("")
        out.append(f'syntax = "{fdp.syntax or "proto2"}";')
        if fdp.package:
            out.append("")
            out.append(f"package {fdp.package};")
        for dep in fdp.dependency:
            out.append(f'import "{dep}";')
        options = fdp.options.ListFields()
        if options:
            out.append("")
        for option, value in sorted(options, key=lambda item: item[0].name):
            text = ("true" if value else "false") if isinstance(value, bool) else json.dumps(value)
            out.append(f"option {option.name} = {text};")
        for svc in fdp.service:
            out.append("")
            out.append(f"service {svc.name} {{")
            for meth in svc.method:
                req = ("stream " if meth.client_streaming else "") + self._rpc_ref(meth.input_type)
                resp = ("stream " if meth.server_streaming else "") + self._rpc_ref(meth.output_type)
                out.append(f"  rpc {meth.name}({req}) returns ({resp});")
            out.append("}")
        for i, m in enumerate(fdp.message_type):
            out.append("")
            self._message(m, f"{self.prefix}{m.name}", (_FILE_MESSAGE_TYPE, i), "")
        for e in fdp.enum_type:
            out.append("")
            out.append(f"enum {e.name} {{")
            for v in e.value:
                out.append(f"  {v.name} = {v.number};")
            out.append("}")
        return "\n".join(out) + "\n"


def render_proto(fdp: descriptor_pb2.FileDescriptorProto, *, header_comment: str = "") -> str:
    """``.proto`` text for a FileDescriptorProto of the shape this package builds.

    Leading comments in ``source_code_info`` are rendered (that is how JSON-carried
    fields are marked); map entry messages are rendered as ``map<K, V>`` fields.
    """
    return _Renderer(fdp).render(header_comment)


def emit_proto(
    schemas: Sequence[SynapseSchema],
    *,
    package: str = DEFAULT_PACKAGE,
    service: str = DEFAULT_SERVICE,
    header_comment: str = "",
    streaming: Mapping[str, SynapseSchema] | None = None,
) -> str:
    """The ``.proto`` text of :func:`build_service_file` (byte-identical for equal input)."""
    fdp = build_service_file(schemas, package=package, service=service, streaming=streaming)
    return render_proto(fdp, header_comment=header_comment)
