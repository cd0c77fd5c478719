"""SynapseSchema, the protobuf face of one synapse class, and its per-class cache."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from pydantic import BaseModel

from axon_grpc.errors import SchemaError
from axon_grpc.schema._convert import _CodecBuilder
from axon_grpc.schema._descriptors import _add_comments, _check_scope, _DescriptorWriter, _new_file, _pool_with
from axon_grpc.schema._types import _JSON, DEFAULT_BASE_FIELDS, DEFAULT_PACKAGE, DEFAULT_RESERVED_NAMES, _Analysis


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

    def __init__(self, cls: type[BaseModel], exclude: Collection[str] = DEFAULT_BASE_FIELDS) -> None:
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

    def _message_proto(self, package: str) -> tuple[descriptor_pb2.DescriptorProto, list[tuple[list[int], str]]]:
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
