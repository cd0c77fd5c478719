"""The type mapping: Python annotations -> field shapes and element kinds.

The defaults, the scalar table, the shape and kind vocabulary and the specs the other
modules read; :class:`_Analysis` walks a synapse class, fills the specs in and raises
:class:`~axon_grpc.errors.SchemaError` for every annotation without a mapping.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Final, Union

from google.protobuf import descriptor_pb2
from pydantic import BaseModel, ConfigDict, Json, TypeAdapter
from pydantic.fields import FieldInfo

from axon_grpc.errors import SchemaError

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
_SCALARS: Final[dict[type, tuple[str, descriptor_pb2.FieldDescriptorProto.Type.ValueType, Any, str]]] = {
    int: ("int64", _F.TYPE_INT64, 0, "Int64"),
    float: ("double", _F.TYPE_DOUBLE, 0.0, "Double"),
    str: ("string", _F.TYPE_STRING, "", "String"),
    bool: ("bool", _F.TYPE_BOOL, False, "Bool"),
    bytes: ("bytes", _F.TYPE_BYTES, b"", "Bytes"),
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
            f.shape in (_MAP, _OPT_MAP) for spec in (self.root_spec, *self.models.values()) for f in spec.fields
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
            raise SchemaError(f"{self.root_name}: {what} name {name!r} is not a valid protobuf identifier")
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
                raise SchemaError(f"{cls.__name__}: the model is not fully defined ({exc}){self._where(cls)}") from exc
        user = [(n, f) for n, f in cls.model_fields.items() if n not in exclude]
        user_names = {n for n, _ in user}
        json_fields = self._json_fields(cls, user_names)
        specs: list[_FieldSpec] = []
        for number, (fname, finfo) in enumerate(user, start=1):
            if not _IDENT.fullmatch(fname):
                raise SchemaError(f"{cls.__name__}.{fname}: not a valid protobuf field name{self._where(cls)}")
            ann = finfo.annotation
            required = finfo.is_required()
            if fname in json_fields:
                specs.append(_FieldSpec(fname, number, _JSON, None, ann, required, _json_adapter(cls, finfo)))
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
                f"{cls.__name__}.proto_json_fields must be a tuple of field names, got {raw!r}{self._where(cls)}"
            )
        names = tuple(raw)
        for n in names:
            if not isinstance(n, str) or n not in user_names:
                raise SchemaError(
                    f"{cls.__name__}.proto_json_fields: {n!r} is not a field of {cls.__name__}{self._where(cls)}"
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
                f"{owner.__name__}.{field}: a synapse cannot contain itself ({self.root_name}){self._where(owner)}"
            )
        if model in self.models or model in self._pending:
            return
        self._claim(model.__name__, model, "model")
        self._via[model] = (
            f"{self.root_name}.{field}" if owner is self.root else (f"{self._via[owner]} -> {owner.__name__}.{field}")
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
                    f"{where}: member name {m.name!r} is not a valid protobuf identifier{self._where(owner)}"
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
                    step = [*path, f"{cls.__name__}.{f.name}"]
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
    json_config = {k: v for k, v in cls.model_config.items() if k.startswith(("ser_json_", "val_json_"))}
    try:
        if json_config:
            try:
                return TypeAdapter(ann, config=ConfigDict(**json_config))  # type: ignore[typeddict-item]
            except Exception:  # e.g. the type is a model with its own config
                pass
        return TypeAdapter(ann)
    except Exception as exc:
        raise SchemaError(
            f"{cls.__name__}: cannot build a JSON adapter for {_type_repr(finfo.annotation)} ({exc})"
        ) from exc
