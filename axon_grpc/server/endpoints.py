"""Attached synapses: one :class:`Endpoint` per synapse class, prepared at ``attach`` time.

Everything the pipeline would otherwise work out per request is decided here once:
which hooks are coroutines, whether the forward streams or runs inline, the fields
the legacy body hash covers, the zero values of required fields. The seed's
``forward_fns``/``blacklist_fns``/``priority_fns``/``verify_fns``/``forward_class_types``
are :class:`HookView` s over the endpoints, so writing to them changes what serves.
"""

from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping, MutableMapping

from axon_grpc._types import BlacklistFn, ForwardFn, PriorityFn, VerifyFn
from axon_grpc.errors import UnknownSynapseError
from axon_grpc.schema import SynapseSchema
from axon_grpc.streaming import is_streaming
from axon_grpc.synapse import BASE_FIELDS, Synapse, hash_fields_of

_IMMUTABLE = (int, float, str, bytes, bool, type(None), enum.Enum)

#: Longest synapse name quoted back in a 404 message.
MAX_QUOTED_NAME = 128


def unknown_synapse(name: str, endpoints: Mapping[str, Any], rule: str | None = None) -> UnknownSynapseError:
    """The 404 of a name no attached synapse has, as the legacy server words it (every transport's);
    ``rule``: the rule of docs/SPEC.md a gRPC answer names."""
    return UnknownSynapseError(
        f"Synapse name '{str(name)[:MAX_QUOTED_NAME]}' not found. Available synapses {list(endpoints)}", rule=rule
    )


def is_async(fn: Callable[..., Any]) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


@dataclass
class Endpoint:
    """One attached synapse type and its functions.

    ``inline`` runs a sync forward on the event loop instead of the thread pool: for
    forwards known to be fast (no blocking I/O, well under a millisecond).
    """

    name: str
    synapse_class: type[Synapse]
    schema: SynapseSchema
    forward_fn: ForwardFn
    blacklist_fn: BlacklistFn | None = None
    priority_fn: PriorityFn | None = None
    verify_fn: VerifyFn | None = None
    inline: bool = False
    forward_is_async: bool = field(init=False)
    streaming: bool = field(init=False)
    #: Whether each hook is a coroutine function (sync ones are called directly on the loop).
    blacklist_async: bool = field(init=False)
    priority_async: bool = field(init=False)
    verify_async: bool = field(init=False)
    user_fields: tuple[str, ...] = field(init=False)
    required_fields: tuple[str, ...] = field(init=False)
    hash_fields: tuple[str, ...] = field(init=False)
    zero_values: dict[str, Any] = field(init=False)
    zero_values_mutable: bool = field(init=False)
    #: ``synapse.timeout`` when the caller sends none (the class's default).
    default_timeout: float | None = field(init=False)

    def __post_init__(self) -> None:
        cls = self.synapse_class
        self.forward_is_async = is_async(self.forward_fn)
        self.streaming = is_streaming(cls)
        self.blacklist_async = self.blacklist_fn is not None and is_async(self.blacklist_fn)
        self.priority_async = self.priority_fn is not None and is_async(self.priority_fn)
        self.verify_async = self.verify_fn is not None and is_async(self.verify_fn)
        self.user_fields = tuple(n for n in cls.model_fields if n not in BASE_FIELDS)
        self.required_fields = tuple(cls.get_required_fields())
        self.hash_fields = hash_fields_of(cls)
        self.zero_values = self.schema.zero_values()
        self.zero_values_mutable = any(not isinstance(v, _IMMUTABLE) for v in self.zero_values.values())
        self.default_timeout = cls.model_fields["timeout"].get_default(call_default_factory=True)

    def defaults_for_missing(self) -> dict[str, Any]:
        """Zero values for required user fields; fresh objects where they are mutable."""
        return self.schema.zero_values() if self.zero_values_mutable else self.zero_values

    def header_synapse(self, **base: Any) -> Synapse:
        """A synapse of this class with its user fields at their defaults (zero values where
        required) and the given base fields, built without validation: what the legacy
        protocol's headers alone describe, and what its error answers carry."""
        values: dict[str, Any] = dict(self.defaults_for_missing())
        values.update(base)
        return self.synapse_class.model_construct(name=self.name, **values)

    def with_functions(self, **changes: Any) -> Endpoint:
        """A copy with some functions replaced (hooks and flags decided anew)."""
        return replace(self, **changes)


#: The seed attribute each function view shows, and the Endpoint field behind it.
VIEWS = {
    "forward_fns": "forward_fn",
    "blacklist_fns": "blacklist_fn",
    "priority_fns": "priority_fn",
    "verify_fns": "verify_fn",
}


class HookView(MutableMapping[str, Any]):
    """A live ``{synapse name: function}`` view of one Endpoint field.

    Writing ``axon.forward_fns["Dummy"] = fn`` replaces that endpoint's forward for the
    next request, as assigning into the SDK's dicts does; a name that is not attached
    cannot be added (attach it), and entries cannot be deleted. ``fallback`` is what an
    endpoint without that function shows (``verify_fns`` shows ``default_verify``, as in
    the SDK); writing it back means "none of my own".
    """

    def __init__(self, endpoints: dict[str, Endpoint], attribute: str, fallback: Any = None) -> None:
        self._endpoints = endpoints
        self._attribute = attribute
        self._fallback = fallback

    def __getitem__(self, name: str) -> Any:
        found = getattr(self._endpoints[name], self._attribute)
        return self._fallback if found is None else found

    def __setitem__(self, name: str, fn: Any) -> None:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise KeyError(f"{name} is not attached: use axon.attach() to serve a new synapse")
        if self._attribute == "forward_fn" and fn is None:
            raise ValueError("a forward function is required")
        if fn is not None and fn == self._fallback:
            fn = None
        self._endpoints[name] = endpoint.with_functions(**{self._attribute: fn})

    def __delitem__(self, name: str) -> None:
        raise TypeError("attached synapses cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._endpoints)

    def __len__(self) -> int:
        return len(self._endpoints)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class ClassView(HookView):
    """``forward_class_types``: the synapse class of each attached name (read-only)."""

    def __init__(self, endpoints: dict[str, Endpoint]) -> None:
        super().__init__(endpoints, "synapse_class")

    def __setitem__(self, name: str, fn: Any) -> None:
        raise TypeError("the synapse class of an endpoint is set by attach()")
