"""Checks of the functions given to ``Axon.attach``, comparing types as a user means them.

``tuple[bool, str]`` and ``typing.Tuple[bool, str]`` are the same type here, and
annotations postponed by ``from __future__ import annotations`` are resolved.
A missing annotation is accepted (lambdas and partials have none); a present one
that names another type is refused with the seed's assertion message. A forward may
return its synapse class, one of its Synapse base classes or ``Any``, as the SDK allows.
"""

from __future__ import annotations

import inspect
import sys
import typing
from types import FrameType
from typing import Any, Callable

from axon_grpc.streaming import is_streaming
from axon_grpc.synapse import Synapse

_EMPTY = inspect.Parameter.empty
_FRAMES_SEARCHED = 12


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations; empty when they cannot be resolved (then nothing is compared).

    Postponed annotations naming a class local to a function (common in tests) are
    resolved against the locals of the calling frames, innermost first.
    """
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(fn, "__call__", fn)  # noqa: B004
    try:
        return typing.get_type_hints(target)
    except NameError:
        pass
    except Exception:
        return {}
    frame: FrameType | None = sys._getframe(1)
    localns: dict[str, Any] = {}
    for _ in range(_FRAMES_SEARCHED):
        if frame is None:
            break
        localns = {**frame.f_locals, **localns}
        try:
            return typing.get_type_hints(target, localns=localns)
        except Exception:
            frame = frame.f_back
    return {}


def _normalize(tp: Any) -> Any:
    """A comparable form: ``Tuple[bool, str]`` -> ``(tuple, (bool, str))``; NoneType -> None."""
    if tp is type(None):
        return None
    origin = typing.get_origin(tp)
    if origin is None:
        return tp
    return (origin, tuple(_normalize(a) for a in typing.get_args(tp)))


def _single_parameter(fn: Callable[..., Any]) -> inspect.Parameter | None:
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is _EMPTY
    ]
    return params[0] if len(params) == 1 else None


def synapse_class_of(forward_fn: Callable[..., Any]) -> type[Synapse]:
    """The synapse class named by the first parameter's annotation of ``forward_fn``."""
    try:
        first = next(iter(inspect.signature(forward_fn).parameters.values()))
    except StopIteration:
        raise ValueError(
            "The forward_fn first argument must be a subclass of Synapse, but it has no arguments"
        ) from None
    annotation = _hints(forward_fn).get(first.name, first.annotation)
    assert not isinstance(annotation, str), (
        f"The annotation {annotation!r} of forward_fn cannot be resolved: define the synapse class at module level"
    )
    assert isinstance(annotation, type) and issubclass(annotation, Synapse), (
        "The first argument of forward_fn must inherit from Synapse"
    )
    return annotation


def check_hook(
    fn: Callable[..., Any], synapse_class: type[Synapse], role: str, returns: tuple[Any, ...], shown: str
) -> None:
    """Assert ``fn`` takes one ``synapse_class`` and returns one of ``returns``."""
    name = synapse_class.__name__
    message = f"The {role}_fn function must have the signature: {role}( synapse: {name} ) -> {shown}"
    param = _single_parameter(fn)
    assert param is not None, message
    hints = _hints(fn)
    if param.name in hints:
        assert hints[param.name] is synapse_class, message
    if "return" in hints:
        assert _normalize(hints["return"]) in [_normalize(r) for r in returns], message


def forward_returns(cls: type[Synapse]) -> tuple[Any, ...]:
    """What a forward of ``cls`` may be annotated to return, as the SDK accepts it.

    ``cls`` itself, any of its Synapse base classes (``-> Synapse`` included) and
    ``Any`` (the SDK's own tests write ``-> Any``); no annotation is accepted too.
    """
    return (Any, *(base for base in cls.__mro__ if isinstance(base, type) and issubclass(base, Synapse)))


def check_attach(
    forward_fn: Callable[..., Any],
    blacklist_fn: Callable[..., Any] | None,
    priority_fn: Callable[..., Any] | None,
    verify_fn: Callable[..., Any] | None,
) -> type[Synapse]:
    """Validate the four functions of one ``attach``; returns the synapse class."""
    cls = synapse_class_of(forward_fn)
    if not is_streaming(cls):  # a streaming forward yields chunks or returns a StreamingResponse
        check_hook(forward_fn, cls, "forward", forward_returns(cls), cls.__name__)
    if blacklist_fn is not None:
        check_hook(blacklist_fn, cls, "blacklist", (tuple[bool, str], bool), "tuple[bool, str]")
    if priority_fn is not None:
        check_hook(priority_fn, cls, "priority", (float, int), "float")
    if verify_fn is not None:
        check_hook(verify_fn, cls, "verify", (None,), "None")
    return cls
