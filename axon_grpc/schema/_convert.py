"""Value converters: field values <-> messages, planned once per schema."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from pydantic import BaseModel, ValidationError

from axon_grpc.schema._types import (
    _ENUM,
    _JSON,
    _MAP,
    _MISSING,
    _MODEL,
    _OPT_MAP,
    _OPT_REPEATED,
    _OPTIONAL,
    _REPEATED,
    _SCALAR,
    _SCALARS,
    _SINGLE,
    DEFAULT_PACKAGE,
    _Analysis,
    _Elem,
    _FieldSpec,
    _ModelSpec,
)

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
            f"{self.name}: expected a pydantic model or a mapping of field values, got {type(values).__name__}"
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
            analysis.root: _Codec(analysis.root, analysis.root_name, message_factory.GetMessageClass(root_desc))
        }
        for model, spec in analysis.models.items():
            self.codecs[model] = _Codec(model, spec.name, message_factory.GetMessageClass(nested[spec.name]))
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
                except ValidationError as exc:  # its first reason only: never the value itself
                    first = exc.errors(include_url=False, include_input=False)[0]
                    reason = str(first.get("msg", "invalid"))[:100]
                    raise ValueError(f"{where}: JSON-carried value is invalid: {reason}") from None

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
        if all(f.shape in (_SINGLE, _OPTIONAL) and f.elem is not None and f.elem.kind == _SCALAR for f in spec.fields):
            codec.flat_pairs = tuple((f.name, f.shape == _OPTIONAL) for f in spec.fields)
