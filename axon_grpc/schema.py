"""Map synapse classes (pydantic models) to protobuf messages.

A synapse's *user fields* (every model field except the base fields the axon itself
carries in metadata) become the fields of one proto3 message named after the class, in
package ``axon.v1``.  Fields are numbered from 1 in declaration order, so appending a
field in a subclass keeps every earlier number.

=========================================  =====================================
Python annotation                          protobuf
=========================================  =====================================
``int`` / ``float`` / ``str`` /            ``int64`` / ``double`` / ``string`` /
``bool`` / ``bytes``                       ``bool`` / ``bytes``
``Optional[scalar]``, ``Optional[Enum]``   ``optional T`` (None <-> unset)
``list[T]``                                ``repeated T``
``dict[str, T]``                           ``map<string, T>``
``SomeModel`` / ``Optional[SomeModel]``    nested message ``Synapse.SomeModel``
``SomeEnum``                               nested enum ``Synapse.SomeEnum``
``Optional[list[T]]``                      ``Synapse._ListT`` (wrapper: None != [])
``Optional[dict[str, T]]``                 ``Synapse._MapT`` (wrapper: None != {})
listed in ``proto_json_fields``            ``bytes`` holding the value's JSON
=========================================  =====================================

``T`` is a scalar, an enum or a model.  ``Annotated[...]`` (so pydantic's constrained
types) and ``NewType`` are looked through.  Every other annotation raises
:class:`~axon_grpc.errors.SchemaError` naming the class, the field and the type.

Models and enums used by a synapse are all declared inside the synapse's message (one
flat level, each once), so two synapses may use different models of the same name.
Every synapse gets its own :class:`~google.protobuf.descriptor_pool.DescriptorPool`;
classes of the same name from different modules never collide.

:func:`schema_for` builds (once per class) a :class:`SynapseSchema` that converts
between field values and messages; :func:`build_service_file` gathers several into one
file with the ``Axon`` service; :func:`emit_proto` renders that file as ``.proto`` text.
"""

from __future__ import annotations

import enum
import re
import threading
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final, Union

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from pydantic import BaseModel, ConfigDict, Json, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from .errors import SchemaError

__all__ = [
    "DEFAULT_BASE_FIELDS",
    "DEFAULT_PACKAGE",
    "DEFAULT_RESERVED_NAMES",
    "DEFAULT_SERVICE",
    "SynapseSchema",
    "build_service_file",
    "emit_proto",
    "render_proto",
    "schema_for",
]

#: Fields of the Synapse base class; they travel in metadata, not in the message.
DEFAULT_BASE_FIELDS: Final[tuple[str, ...]] = (
    "name",
    "timeout",
    "total_size",
    "header_size",
    "dendrite",
    "axon",
    "computed_body_hash",
)
#: Message names the project's shared messages use (a field-less "Synapse" is allowed).
DEFAULT_RESERVED_NAMES: Final[tuple[str, ...]] = ("TerminalInfo", "Synapse", "Chunk")
DEFAULT_PACKAGE: Final = "axon.v1"
DEFAULT_SERVICE: Final = "Axon"

_F = descriptor_pb2.FieldDescriptorProto
_LABEL_OPTIONAL: Final = _F.LABEL_OPTIONAL
_LABEL_REPEATED: Final = _F.LABEL_REPEATED

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_NONE_TYPE = type(None)

# python type -> (proto type name, FieldDescriptorProto type, zero value, wrapper suffix)
_SCALARS: Final[
    dict[type, tuple[str, descriptor_pb2.FieldDescriptorProto.Type.ValueType, Any, str]]
] = {
    int: ("int64", _F.TYPE_INT64, 0, "Int64"),
    float: ("double", _F.TYPE_DOUBLE, 0.0, "Double"),
    str: ("string", _F.TYPE_STRING, "", "String"),
    bool: ("bool", _F.TYPE_BOOL, False, "Bool"),
    bytes: ("bytes", _F.TYPE_BYTES, b"", "Bytes"),
}
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

# field shapes
_SINGLE: Final = "single"  # T
_OPTIONAL: Final = "optional"  # Optional[T]
_REPEATED: Final = "repeated"  # list[T]
_MAP: Final = "map"  # dict[str, T]
_OPT_REPEATED: Final = "opt_repeated"  # Optional[list[T]] -> wrapper message
_OPT_MAP: Final = "opt_map"  # Optional[dict[str, T]] -> wrapper message
_JSON: Final = "json"  # proto_json_fields -> bytes

# element kinds
_SCALAR: Final = "scalar"
_ENUM: Final = "enum"
_MODEL: Final = "model"

# DescriptorProto / FileDescriptorProto field numbers used in SourceCodeInfo paths
_FILE_MESSAGE_TYPE: Final = 4
_MSG_FIELD: Final = 2
_MSG_NESTED_TYPE: Final = 3


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return "<missing>"


_MISSING: Final = _Missing()


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class _Elem:
    """The element type of a field: a scalar type, an Enum class or a model class."""

    kind: str
    py: Any


@dataclass
class _FieldSpec:
    name: str
    number: int
    shape: str
    elem: _Elem | None  # None for JSON-carried fields
    annotation: Any
    required: bool  # pydantic has no default for it
    adapter: TypeAdapter[Any] | None = None
    wrapper: str | None = None  # wrapper message name for _OPT_REPEATED / _OPT_MAP


@dataclass
class _EnumSpec:
    cls: type[enum.Enum]
    name: str
    members: list[tuple[enum.Enum, int, str]]  # (member, number, value name); zero first
    zero: enum.Enum


@dataclass
class _ModelSpec:
    cls: type[BaseModel]
    name: str
    fields: list[_FieldSpec]


def _type_repr(tp: Any) -> str:
    """A stable, one-line spelling of an annotation for messages and comments."""
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        if tp.__module__ == "builtins":
            return tp.__qualname__
        return f"{tp.__module__}.{tp.__qualname__}"
    return " ".join(repr(tp).split())


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).upper()


def _is_json_marker(meta: Any) -> bool:
    return isinstance(meta, typing.cast(type, Json)) or meta is Json


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


class _Analysis:
    """Walks a synapse class and every model/enum it reaches; raises SchemaError."""

    def __init__(self, root: type[BaseModel], exclude: Collection[str]) -> None:
        self.root = root
        self.root_name = root.__name__
        self.enums: dict[type, _EnumSpec] = {}
        self.models: dict[type, _ModelSpec] = {}  # nested models, discovery order
        self.wrappers: dict[str, tuple[str, _Elem]] = {}  # name -> (shape, elem)
        self._nested_names: dict[str, Any] = {}
        self._via: dict[type, str] = {}
        self._pending: list[type[BaseModel]] = []

        if not _IDENT.fullmatch(self.root_name):
            raise SchemaError(f"{self.root_name!r} is not a valid protobuf message name")
        self.root_spec = self._analyze_model(root, exclude)
        while self._pending:
            model = self._pending.pop(0)
            self.models[model] = self._analyze_model(model, ())
        self._check_cycles()
        self.has_maps = any(
            f.shape in (_MAP, _OPT_MAP)
            for spec in (self.root_spec, *self.models.values())
            for f in spec.fields
        )

    # -- helpers --------------------------------------------------------------------

    def _where(self, owner: type) -> str:
        return "" if owner is self.root else f" (reached from {self._via[owner]})"

    def _fail(self, owner: type, field: str, annotation: Any, reason: str = "") -> SchemaError:
        why = f" ({reason})" if reason else ""
        return SchemaError(
            f"{owner.__name__}.{field}: type {_type_repr(annotation)} has no protobuf "
            f"mapping{why}; mark it JSON-carried with proto_json_fields = ('{field}',) "
            f"or change its type{self._where(owner)}"
        )

    def _claim(self, name: str, owner: Any, what: str) -> None:
        if not _IDENT.fullmatch(name):
            raise SchemaError(
                f"{self.root_name}: {what} name {name!r} is not a valid protobuf identifier"
            )
        if name == self.root_name:
            raise SchemaError(
                f"{self.root_name}: {what} {name!r} has the same name as the synapse "
                f"message it would be declared in; rename one of them"
            )
        prior = self._nested_names.get(name, _MISSING)
        if prior is _MISSING:
            self._nested_names[name] = owner
        elif prior != owner:
            raise SchemaError(
                f"{self.root_name}: two different types are named {name!r} "
                f"({_type_repr(prior) if isinstance(prior, type) else prior} and "
                f"{_type_repr(owner) if isinstance(owner, type) else owner}); rename one"
            )

    # -- models ---------------------------------------------------------------------

    def _analyze_model(self, cls: type[BaseModel], exclude: Collection[str]) -> _ModelSpec:
        if not getattr(cls, "__pydantic_complete__", True):
            try:
                cls.model_rebuild()
            except Exception as exc:
                raise SchemaError(
                    f"{cls.__name__}: the model is not fully defined ({exc}){self._where(cls)}"
                ) from exc
        user = [(n, f) for n, f in cls.model_fields.items() if n not in exclude]
        user_names = {n for n, _ in user}
        json_fields = self._json_fields(cls, user_names)
        specs: list[_FieldSpec] = []
        for number, (fname, finfo) in enumerate(user, start=1):
            if not _IDENT.fullmatch(fname):
                raise SchemaError(
                    f"{cls.__name__}.{fname}: not a valid protobuf field name{self._where(cls)}"
                )
            ann = finfo.annotation
            required = finfo.is_required()
            if fname in json_fields:
                specs.append(
                    _FieldSpec(fname, number, _JSON, None, ann, required, _json_adapter(cls, finfo))
                )
                continue
            if any(_is_json_marker(m) for m in finfo.metadata):
                raise self._fail(cls, fname, ann, "pydantic.Json fields hold JSON text")
            shape, elem = self._classify(cls, fname, ann)
            spec = _FieldSpec(fname, number, shape, elem, ann, required)
            if shape in (_OPT_REPEATED, _OPT_MAP):
                spec.wrapper = self._wrapper(shape, elem)
            specs.append(spec)
        return _ModelSpec(cls, cls.__name__, specs)

    def _json_fields(self, cls: type, user_names: set[str]) -> frozenset[str]:
        raw = getattr(cls, "proto_json_fields", ())
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
            raise SchemaError(
                f"{cls.__name__}.proto_json_fields must be a tuple of field names, "
                f"got {raw!r}{self._where(cls)}"
            )
        names = tuple(raw)
        for n in names:
            if not isinstance(n, str) or n not in user_names:
                raise SchemaError(
                    f"{cls.__name__}.proto_json_fields: {n!r} is not a field of "
                    f"{cls.__name__}{self._where(cls)}"
                )
        return frozenset(names)

    # -- annotations ----------------------------------------------------------------

    def _strip(self, owner: type, field: str, whole: Any, tp: Any) -> Any:
        """Look through Annotated[...] and NewType."""
        while True:
            if typing.get_origin(tp) is typing.Annotated:
                if any(_is_json_marker(m) for m in tp.__metadata__):
                    raise self._fail(owner, field, whole, "pydantic.Json fields hold JSON text")
                tp = tp.__origin__
            elif callable(tp) and hasattr(tp, "__supertype__"):
                tp = tp.__supertype__
            else:
                return tp

    def _unoptional(self, owner: type, field: str, whole: Any, tp: Any) -> tuple[Any, bool]:
        optional = False
        while True:
            tp = self._strip(owner, field, whole, tp)
            if not _is_union(typing.get_origin(tp)):
                return tp, optional
            args = typing.get_args(tp)
            rest = [a for a in args if a is not _NONE_TYPE]
            if len(rest) == len(args) or len(rest) != 1:
                raise self._fail(owner, field, whole, "unions are not supported")
            tp, optional = rest[0], True

    def _classify(self, owner: type, field: str, ann: Any) -> tuple[str, _Elem]:
        tp, optional = self._unoptional(owner, field, ann, ann)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is list:
            if len(args) != 1:
                raise self._fail(owner, field, ann, "a list needs its element type")
            elem = self._elem(owner, field, ann, args[0], "list elements")
            return (_OPT_REPEATED if optional else _REPEATED), elem
        if origin is dict:
            if len(args) != 2:
                raise self._fail(owner, field, ann, "a dict needs its key and value types")
            if self._strip(owner, field, ann, args[0]) is not str:
                raise self._fail(owner, field, ann, "map keys must be str")
            elem = self._elem(owner, field, ann, args[1], "map values")
            return (_OPT_MAP if optional else _MAP), elem
        if origin is not None:
            raise self._fail(owner, field, ann)
        elem = self._elem(owner, field, ann, tp, "")
        return (_OPTIONAL if optional else _SINGLE), elem

    def _elem(self, owner: type, field: str, whole: Any, tp: Any, role: str) -> _Elem:
        tp = self._strip(owner, field, whole, tp)
        origin = typing.get_origin(tp)
        if role and _is_union(origin):
            raise self._fail(owner, field, whole, f"{role} cannot be None or a union")
        if origin is None and isinstance(tp, type):
            if issubclass(tp, enum.Enum):
                self._enum(owner, field, tp)
                return _Elem(_ENUM, tp)
            if tp in _SCALARS:
                return _Elem(_SCALAR, tp)
            if issubclass(tp, BaseModel) and tp is not BaseModel:
                self._model(owner, field, tp)
                return _Elem(_MODEL, tp)
        if role and origin in (list, dict):
            raise self._fail(owner, field, whole, f"{role} cannot be lists or dicts")
        raise self._fail(owner, field, whole)

    def _model(self, owner: type, field: str, model: type[BaseModel]) -> None:
        if model is self.root:
            raise SchemaError(
                f"{owner.__name__}.{field}: a synapse cannot contain itself "
                f"({self.root_name}){self._where(owner)}"
            )
        if model in self.models or model in self._pending:
            return
        self._claim(model.__name__, model, "model")
        self._via[model] = (
            f"{self.root_name}.{field}"
            if owner is self.root
            else (f"{self._via[owner]} -> {owner.__name__}.{field}")
        )
        self._pending.append(model)

    def _enum(self, owner: type, field: str, cls: type[enum.Enum]) -> None:
        if cls in self.enums:
            return
        where = f"{owner.__name__}.{field}: enum {_type_repr(cls)}"
        if issubclass(cls, enum.Flag):
            raise SchemaError(
                f"{where} is a Flag (combined values have no protobuf mapping); "
                f"use proto_json_fields = ('{field}',) or a list of an Enum{self._where(owner)}"
            )
        members = list(cls)
        if not members:
            raise SchemaError(f"{where} has no members{self._where(owner)}")
        self._claim(cls.__name__, cls, "enum")
        values = [m.value for m in members]
        by_value = (
            all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            and 0 in values
            and len(set(values)) == len(values)
            and all(_INT32_MIN <= v <= _INT32_MAX for v in values)
        )
        numbers = [int(v) for v in values] if by_value else list(range(len(members)))
        prefix = _upper_snake(cls.__name__)
        numbered = []
        for m, n in zip(members, numbers, strict=True):
            if not _IDENT.fullmatch(m.name):
                raise SchemaError(
                    f"{where}: member name {m.name!r} is not a valid protobuf identifier"
                    f"{self._where(owner)}"
                )
            numbered.append((m, n, f"{prefix}_{m.name}"))
        numbered.sort(key=lambda item: item[1] != 0)  # proto3: the zero value comes first
        self.enums[cls] = _EnumSpec(cls, cls.__name__, numbered, numbered[0][0])

    def _wrapper(self, shape: str, elem: _Elem) -> str:
        if elem.kind == _SCALAR:
            suffix = _SCALARS[elem.py][3]
        else:
            suffix = elem.py.__name__
        name = f"_{'List' if shape == _OPT_REPEATED else 'Map'}{suffix}"
        self._claim(name, (shape, elem), "wrapper message")
        self.wrappers.setdefault(name, (shape, elem))
        return name

    def _check_cycles(self) -> None:
        """Refuse models that contain themselves through non-Optional, non-container fields.

        Such a model has no finite value (and its proto3 zero value would be infinite).
        """
        specs = {self.root: self.root_spec, **self.models}
        state: dict[type, int] = {}

        def visit(cls: type, path: list[str]) -> None:
            state[cls] = 1
            for f in specs[cls].fields:
                if f.shape == _SINGLE and f.elem is not None and f.elem.kind == _MODEL:
                    step = path + [f"{cls.__name__}.{f.name}"]
                    nxt = f.elem.py
                    if state.get(nxt) == 1:
                        raise SchemaError(
                            f"{self.root_name}: recursive model {nxt.__name__} contains itself "
                            f"through non-Optional fields ({' -> '.join(step)}); make the "
                            f"recursive field Optional[...] or a list"
                        )
                    if nxt not in state:
                        visit(nxt, step)
            state[cls] = 2

        for cls in specs:
            if cls not in state:
                visit(cls, [])


def _json_adapter(cls: type[BaseModel], finfo: FieldInfo) -> TypeAdapter[Any]:
    ann = finfo.rebuild_annotation()
    json_config = {
        k: v for k, v in cls.model_config.items() if k.startswith(("ser_json_", "val_json_"))
    }
    try:
        if json_config:
            try:
                return TypeAdapter(ann, config=ConfigDict(**json_config))  # type: ignore[typeddict-item]
            except Exception:  # e.g. the type is a model with its own config
                pass
        return TypeAdapter(ann)
    except Exception as exc:
        raise SchemaError(
            f"{cls.__name__}: cannot build a JSON adapter for "
            f"{_type_repr(finfo.annotation)} ({exc})"
        ) from exc


# ------------------------------------------------------------------------ descriptors


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

    def _fill(
        self, mp: descriptor_pb2.DescriptorProto, full: str, spec: _ModelSpec, base: list[int]
    ) -> None:
        for i, f in enumerate(spec.fields):
            self._add_field(mp, full, f.name, f.number, f.shape, f.elem, f.wrapper)
            if f.shape == _JSON:
                self.comments.append(
                    (base + [_MSG_FIELD, i], f" JSON-encoded {_type_repr(f.annotation)}\n")
                )

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
                f"{owner}: {name!r} is both a {prior} and a {kind} in message {where}; "
                f"rename one of them"
            )
        seen[name] = kind
    for n in mp.nested_type:
        _check_scope(n, f"{where}.{n.name}", owner)


def _new_file(name: str, package: str) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3")


def _add_comments(
    fdp: descriptor_pb2.FileDescriptorProto, index: int, comments: list[tuple[list[int], str]]
) -> None:
    for path, text in comments:
        loc = fdp.source_code_info.location.add()
        loc.path.extend([_FILE_MESSAGE_TYPE, index, *path])
        loc.span.extend([0, 0, 0])  # positions are unknown; the shape must be valid
        loc.leading_comments = text


def _pool_with(
    fdp: descriptor_pb2.FileDescriptorProto, what: str
) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    try:
        pool.Add(fdp)
    except Exception as exc:
        raise SchemaError(f"{what}: protobuf rejected the generated descriptor: {exc}") from exc
    return pool


# ------------------------------------------------------------------------- conversion

_Encoder = Callable[[Any], Any]
_Decoder = Callable[[Any], Any]


def _diagnose(owner: str, msg_cls: type[Message], kw: dict[str, Any], exc: Exception) -> Exception:
    """Find which field a failed ``msg_cls(**kw)`` choked on and name it."""
    for key, value in kw.items():
        try:
            msg_cls(**{key: value})
        except (ValueError, TypeError) as field_exc:
            return type(field_exc)(f"{owner}.{key}: {field_exc}")
    return type(exc)(f"{owner}: {exc}")


class _Codec:
    """Converts between one model's field values and its message class."""

    __slots__ = (
        "dec_plan",
        "enc_plan",
        "flat_names",
        "flat_pairs",
        "model",
        "msg_cls",
        "name",
        "zero_plan",
    )

    def __init__(self, model: type[BaseModel], name: str, msg_cls: type[Message]) -> None:
        self.model = model
        self.name = name
        self.msg_cls = msg_cls
        self.enc_plan: tuple[tuple[str, _Encoder | None, bool], ...] = ()
        self.dec_plan: tuple[tuple[str, _Decoder], ...] = ()
        self.zero_plan: tuple[tuple[str, Callable[[], Any]], ...] = ()
        self.flat_names: tuple[str, ...] | None = None  # every field passes through as is
        self.flat_pairs: tuple[tuple[str, bool], ...] | None = None  # scalar-only message

    def _getter(self, values: Any) -> Callable[..., Any]:
        t = type(values)
        if t is dict:
            get: Callable[..., Any] = values.get
            return get
        if t is self.model or isinstance(values, BaseModel):
            get = values.__dict__.get
            return get
        if isinstance(values, Mapping):
            get = values.get
            return get
        raise TypeError(
            f"{self.name}: expected a pydantic model or a mapping of field values, "
            f"got {type(values).__name__}"
        )

    def encode(self, values: Any) -> Message:
        get = self._getter(values)
        kw: dict[str, Any] = {}
        names = self.flat_names
        if names is not None:
            for n in names:
                v = get(n)
                if v is not None:
                    kw[n] = v
        else:
            for n, enc, keep_none in self.enc_plan:
                v = get(n, _MISSING)
                if v is _MISSING or (v is None and not keep_none):
                    continue
                kw[n] = v if enc is None else enc(v)
        try:
            return self.msg_cls(**kw)
        except (ValueError, TypeError) as exc:
            raise _diagnose(self.name, self.msg_cls, kw, exc) from exc

    def decode(self, msg: Any) -> dict[str, Any]:
        pairs = self.flat_pairs
        if pairs is not None:
            return {n: getattr(msg, n) if not p or msg.HasField(n) else None for n, p in pairs}
        out: dict[str, Any] = {}
        for n, dec in self.dec_plan:
            v = dec(msg)
            if v is not _MISSING:
                out[n] = v
        return out

    def zero(self) -> dict[str, Any]:
        return {n: make() for n, make in self.zero_plan}


def _const(value: Any) -> Callable[[], Any]:
    return lambda: value


class _CodecBuilder:
    """Builds the per-field converter closures once, at schema build time."""

    def __init__(self, analysis: _Analysis, pool: descriptor_pool.DescriptorPool) -> None:
        self.a = analysis
        root_desc = pool.FindMessageTypeByName(f"{DEFAULT_PACKAGE}.{analysis.root_name}")
        self.root_desc = root_desc
        nested = root_desc.nested_types_by_name
        self.codecs: dict[type, _Codec] = {
            analysis.root: _Codec(
                analysis.root, analysis.root_name, message_factory.GetMessageClass(root_desc)
            )
        }
        for model, spec in analysis.models.items():
            self.codecs[model] = _Codec(
                model, spec.name, message_factory.GetMessageClass(nested[spec.name])
            )
        self.wrapper_cls: dict[str, type[Message]] = {
            w: message_factory.GetMessageClass(nested[w]) for w in analysis.wrappers
        }
        specs = {analysis.root: analysis.root_spec, **analysis.models}
        for model, spec in specs.items():
            self._plan(self.codecs[model], spec)

    # element converters (None means "pass through unchanged")

    def _elem_enc(self, elem: _Elem, where: str) -> _Encoder | None:
        if elem.kind == _SCALAR:
            return None
        if elem.kind == _MODEL:
            return self.codecs[elem.py].encode
        es = self.a.enums[elem.py]
        table: dict[Any, int] = {}
        for member, number, _ in es.members:
            table[member] = number
        enum_cls = es.cls

        def enc_enum(v: Any) -> int:
            try:
                return table[v]
            except (KeyError, TypeError):
                pass
            try:
                return table[enum_cls(v)]
            except (ValueError, TypeError, KeyError):
                raise ValueError(f"{where}: {v!r} is not a member of {enum_cls.__name__}") from None

        return enc_enum

    def _elem_dec(self, elem: _Elem, where: str) -> _Decoder | None:
        if elem.kind == _SCALAR:
            return None
        if elem.kind == _MODEL:
            return self.codecs[elem.py].decode
        es = self.a.enums[elem.py]
        by_number = {number: member for member, number, _ in es.members}
        enum_name = es.name

        def dec_enum(n: int) -> enum.Enum:
            try:
                return by_number[n]
            except KeyError:
                raise ValueError(f"{where}: {n} is not a value of enum {enum_name}") from None

        return dec_enum

    def _container_enc(self, shape: str, elem: _Elem, where: str) -> _Encoder | None:
        """Encoder for list[T] (shape _REPEATED) or dict[str, T] (_MAP)."""
        one = self._elem_enc(elem, where)
        if one is None:
            return None
        if shape == _REPEATED:
            return lambda v: [one(x) for x in v]
        return lambda v: {k: one(x) for k, x in v.items()}

    def _container_dec(self, shape: str, elem: _Elem, where: str) -> Callable[[Any], Any]:
        one = self._elem_dec(elem, where)
        if shape == _REPEATED:
            if one is None:
                return list
            return lambda c: [one(x) for x in c]
        if one is None:
            return dict
        return lambda c: {k: one(x) for k, x in c.items()}

    def _field(self, owner: str, f: _FieldSpec) -> tuple[_Encoder | None, bool, _Decoder]:
        name = f.name
        where = f"{owner}.{name}"
        shape = f.shape
        getter: Callable[[Any], Any] = attrgetter(name)

        if shape == _JSON:
            adapter = f.adapter
            assert adapter is not None

            def enc_json(v: Any) -> bytes:
                return b"null" if v is None else adapter.dump_json(v)

            def dec_json(m: Any) -> Any:
                data = getattr(m, name)
                if not data:
                    return _MISSING  # absent: let pydantic use the default (or complain)
                try:
                    return adapter.validate_json(data)
                except ValidationError as exc:
                    raise ValueError(f"{where}: JSON-carried value is invalid: {exc}") from exc

            return enc_json, True, dec_json

        elem = f.elem
        assert elem is not None
        if shape in (_SINGLE, _OPTIONAL):
            enc = self._elem_enc(elem, where)
            one = self._elem_dec(elem, where)
            if shape == _OPTIONAL:

                def dec_opt(m: Any) -> Any:
                    if not m.HasField(name):
                        return None
                    v = getattr(m, name)
                    return v if one is None else one(v)

                return enc, False, dec_opt
            if one is None:
                return enc, False, getter
            return enc, False, lambda m: one(getattr(m, name))

        if shape in (_REPEATED, _MAP):
            enc = self._container_enc(shape, elem, where)
            conv = self._container_dec(shape, elem, where)
            return enc, False, lambda m: conv(getattr(m, name))

        # Optional[list[T]] / Optional[dict[str, T]]: a wrapper message with `values`
        inner = _REPEATED if shape == _OPT_REPEATED else _MAP
        assert f.wrapper is not None
        wrapper_cls = self.wrapper_cls[f.wrapper]
        inner_enc = self._container_enc(inner, elem, where)
        conv = self._container_dec(inner, elem, where)
        if inner_enc is None:

            def enc_wrap(v: Any) -> Message:
                return wrapper_cls(values=v)

        else:

            def enc_wrap(v: Any) -> Message:
                return wrapper_cls(values=inner_enc(v))

        def dec_wrap(m: Any) -> Any:
            if not m.HasField(name):
                return None
            return conv(getattr(m, name).values)

        return enc_wrap, False, dec_wrap

    def _zero(self, f: _FieldSpec) -> Callable[[], Any] | None:
        shape = f.shape
        if shape == _JSON:
            return None  # no zero value for an arbitrary type: pydantic decides
        if shape in (_OPTIONAL, _OPT_REPEATED, _OPT_MAP):
            return _const(None)
        if shape == _REPEATED:
            return list
        if shape == _MAP:
            return dict
        elem = f.elem
        assert elem is not None
        if elem.kind == _SCALAR:
            return _const(_SCALARS[elem.py][2])
        if elem.kind == _ENUM:
            return _const(self.a.enums[elem.py].zero)
        model: type[BaseModel] = elem.py
        codec = self.codecs[model]
        return lambda: model.model_construct(**codec.zero())

    def _plan(self, codec: _Codec, spec: _ModelSpec) -> None:
        enc_plan = []
        dec_plan = []
        zero_plan = []
        for f in spec.fields:
            enc, keep_none, dec = self._field(spec.name, f)
            enc_plan.append((f.name, enc, keep_none))
            dec_plan.append((f.name, dec))
            if f.required:
                make = self._zero(f)
                if make is not None:
                    zero_plan.append((f.name, make))
        codec.enc_plan = tuple(enc_plan)
        codec.dec_plan = tuple(dec_plan)
        codec.zero_plan = tuple(zero_plan)
        if all(enc is None and not keep for _, enc, keep in enc_plan):
            codec.flat_names = tuple(n for n, _, _ in enc_plan)
        if all(
            f.shape in (_SINGLE, _OPTIONAL) and f.elem is not None and f.elem.kind == _SCALAR
            for f in spec.fields
        ):
            codec.flat_pairs = tuple((f.name, f.shape == _OPTIONAL) for f in spec.fields)


# ----------------------------------------------------------------------------- schema


class SynapseSchema:
    """The protobuf face of one synapse class (build with :func:`schema_for`)."""

    cls: type[BaseModel]
    name: str
    message_class: type[Message]
    descriptor: Descriptor
    file_descriptor_proto: descriptor_pb2.FileDescriptorProto
    field_names: tuple[str, ...]
    json_fields: tuple[str, ...]

    __slots__ = (
        "_analysis",
        "_codec",
        "_deterministic",
        "_flat_pairs",
        "_from_string",
        "_message_protos",
        "_pool",
        "cls",
        "descriptor",
        "field_names",
        "file_descriptor_proto",
        "json_fields",
        "message_class",
        "name",
    )

    def __init__(
        self, cls: type[BaseModel], exclude: Collection[str] = DEFAULT_BASE_FIELDS
    ) -> None:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise SchemaError(f"{cls!r} is not a pydantic model class")
        analysis = _Analysis(cls, frozenset(exclude))
        self._analysis = analysis
        self.cls = cls
        self.name = analysis.root_name
        self.field_names = tuple(f.name for f in analysis.root_spec.fields)
        self.json_fields = tuple(f.name for f in analysis.root_spec.fields if f.shape == _JSON)
        self._message_protos: dict[str, tuple[descriptor_pb2.DescriptorProto, list[Any]]] = {}

        fdp = _new_file(f"{DEFAULT_PACKAGE.replace('.', '/')}/{self.name}.proto", DEFAULT_PACKAGE)
        message, comments = self._message_proto(DEFAULT_PACKAGE)
        _check_scope(message, self.name, self.name)
        fdp.message_type.add().CopyFrom(message)
        _add_comments(fdp, 0, comments)
        self.file_descriptor_proto = fdp

        self._pool = _pool_with(fdp, self.name)
        builder = _CodecBuilder(analysis, self._pool)
        self.descriptor = builder.root_desc
        self._codec = builder.codecs[cls]
        self._flat_pairs = self._codec.flat_pairs
        self.message_class = self._codec.msg_cls
        self._from_string = self.message_class.FromString
        # Serialization is only order-dependent for maps; deterministic=True costs ~0.5 µs.
        self._deterministic = analysis.has_maps

    def __repr__(self) -> str:
        return f"<SynapseSchema {self.name} fields={self.field_names}>"

    def _message_proto(
        self, package: str
    ) -> tuple[descriptor_pb2.DescriptorProto, list[tuple[list[int], str]]]:
        """This synapse's DescriptorProto with type names in ``package`` (cached)."""
        cached = self._message_protos.get(package)
        if cached is None:
            writer = _DescriptorWriter(self._analysis, package)
            cached = (writer.message(), writer.comments)
            self._message_protos[package] = cached
        return cached

    # -- conversion -----------------------------------------------------------------

    def to_message(self, values: Mapping[str, Any] | BaseModel) -> Message:
        """A message from a synapse instance or a mapping of user field values.

        ``None`` (or an absent key) leaves a field unset; ints outside int64 raise
        ``ValueError`` naming the field.
        """
        return self._codec.encode(values)

    def to_bytes(self, values: Mapping[str, Any] | BaseModel) -> bytes:
        """The serialized message, deterministic (map entries sorted by key)."""
        msg = self._codec.encode(values)
        if self._deterministic:
            return msg.SerializeToString(deterministic=True)
        return msg.SerializeToString()  # no maps: already canonical, and cheaper

    def from_message(self, msg: Message) -> dict[str, Any]:
        """User field values from a message of :attr:`message_class`."""
        return self._codec.decode(msg)

    def from_bytes(self, data: bytes) -> dict[str, Any]:
        """User field values decoded from ``data``, ready for ``cls.model_validate``.

        Unset optional fields are ``None``; other absent fields hold their proto3 zero
        value; nested models are dicts; enums are members.  Raises ``ValueError`` if
        ``data`` is not a valid message or a JSON-carried field does not validate.
        """
        try:
            msg = self._from_string(data)
        except (DecodeError, TypeError) as exc:
            raise ValueError(f"body is not a valid {self.name} message") from exc
        pairs = self._flat_pairs
        if pairs is not None:
            return {n: getattr(msg, n) if not p or msg.HasField(n) else None for n, p in pairs}
        return self._codec.decode(msg)

    def zero_values(self) -> dict[str, Any]:
        """The proto3 zero value of every required (no pydantic default) user field.

        Fresh containers and models each call.  Required ``Optional`` fields get
        ``None``; JSON-carried fields are left out.
        """
        return self._codec.zero()


_CACHE: dict[tuple[type, frozenset[str]], SynapseSchema] = {}
_CACHE_LOCK = threading.RLock()


def schema_for(
    cls: type[BaseModel],
    *,
    exclude: Collection[str] = DEFAULT_BASE_FIELDS,
    reserved_names: Collection[str] = DEFAULT_RESERVED_NAMES,
) -> SynapseSchema:
    """The (cached) schema of a synapse class; raises SchemaError if it has no mapping."""
    key = (cls, frozenset(exclude))
    schema = _CACHE.get(key)
    if schema is None:
        with _CACHE_LOCK:
            schema = _CACHE.get(key)
            if schema is None:
                schema = SynapseSchema(cls, key[1])
                _CACHE[key] = schema
    if schema.name in reserved_names and schema.field_names:
        raise SchemaError(
            f"{schema.name}: the name is reserved for a message the axon shares "
            f"({', '.join(sorted(reserved_names))}); rename the synapse class"
        )
    return schema


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
    streaming: Collection[str] = (),
) -> descriptor_pb2.FileDescriptorProto:
    """One file with every schema's message and ``service {service}`` with one rpc each.

    ``rpc Name(Name) returns (Name)``; for names in ``streaming`` the response is
    ``stream Name``.  The file is checked by loading it into a fresh descriptor pool.
    """
    _check_dotted(package, "package", allow_empty=True)
    _check_dotted(service, "service")
    if "." in service:
        raise SchemaError(f"service {service!r} is not a valid protobuf name")
    seen: dict[str, SynapseSchema] = {}
    for s in schemas:
        prior = seen.get(s.name)
        if prior is not None and prior is not s:
            raise SchemaError(
                f"duplicate message name {s.name!r}: {_type_repr(prior.cls)} and "
                f"{_type_repr(s.cls)}"
            )
        seen[s.name] = s
    unknown = sorted(set(streaming) - set(seen))
    if unknown:
        raise SchemaError(f"streaming names no attached synapse: {', '.join(unknown)}")

    path = f"{package.replace('.', '/')}/" if package else ""
    fdp = _new_file(f"{path}{service.lower()}.proto", package)
    if service in seen:
        raise SchemaError(f"message {service!r} has the same name as the service; rename it")
    prefix = f".{package}." if package else "."
    svc = fdp.service.add(name=service)
    for index, s in enumerate(seen.values()):
        message, comments = s._message_proto(package)
        fdp.message_type.add().CopyFrom(message)
        _add_comments(fdp, index, comments)
        method = svc.method.add(
            name=s.name, input_type=f"{prefix}{s.name}", output_type=f"{prefix}{s.name}"
        )
        if s.name in streaming:
            method.server_streaming = True
    _pool_with(fdp, f"{package or '<no package>'}.{service}")
    return fdp


# ---------------------------------------------------------------------------- rendering


def _comment_lines(text: str, indent: str) -> list[str]:
    lines = text[:-1] if text.endswith("\n") else text
    return [f"{indent}//{line}".rstrip() for line in lines.split("\n")]


class _Renderer:
    def __init__(self, fdp: descriptor_pb2.FileDescriptorProto) -> None:
        self.fdp = fdp
        self.prefix = f".{fdp.package}." if fdp.package else "."
        self.comments = {
            tuple(loc.path): loc.leading_comments
            for loc in fdp.source_code_info.location
            if loc.leading_comments
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
                self._message(n, f"{full}.{n.name}", path + (_MSG_NESTED_TYPE, i), inner)
        for i, e in enumerate(m.enum_type):
            self._comment(path + (4, i), inner)
            self.lines.append(f"{inner}enum {e.name} {{")
            for v in e.value:
                self.lines.append(f"{inner}  {v.name} = {v.number};")
            self.lines.append(f"{inner}}}")
        for i, f in enumerate(m.field):
            self._comment(path + (_MSG_FIELD, i), inner)
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
        for svc in fdp.service:
            out.append("")
            out.append(f"service {svc.name} {{")
            for meth in svc.method:
                req = ("stream " if meth.client_streaming else "") + self._rpc_ref(meth.input_type)
                resp = ("stream " if meth.server_streaming else "") + self._rpc_ref(
                    meth.output_type
                )
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
    """``.proto`` text for a FileDescriptorProto of the shape this module builds.

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
    streaming: Collection[str] = (),
) -> str:
    """The ``.proto`` text of :func:`build_service_file` (byte-identical for equal input)."""
    fdp = build_service_file(schemas, package=package, service=service, streaming=streaming)
    return render_proto(fdp, header_comment=header_comment)
