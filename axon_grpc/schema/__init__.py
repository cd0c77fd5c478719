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

The implementation is private: :mod:`._types` (the type mapping and its refusals),
:mod:`._descriptors` (descriptors, pools and the service file), :mod:`._convert` (value
converters), :mod:`._schema` (:class:`SynapseSchema` and its cache) and :mod:`._render`
(``.proto`` text).
"""

from __future__ import annotations

from axon_grpc.schema._descriptors import build_service_file
from axon_grpc.schema._render import emit_proto, render_proto
from axon_grpc.schema._schema import SynapseSchema, schema_for
from axon_grpc.schema._types import DEFAULT_BASE_FIELDS, DEFAULT_PACKAGE, DEFAULT_RESERVED_NAMES, DEFAULT_SERVICE

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

# The public objects keep the facade as their home module, as before the split.
for _public in (SynapseSchema, build_service_file, emit_proto, render_proto, schema_for):
    _public.__module__ = __name__
del _public
