"""Axon.attach: endpoint naming, the seed's signature assertions, schema refusals."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from axon_grpc import SchemaError, Synapse
from axon_grpc.testing import build_axon, serve_axon

from .support import Dummy, dummy_forward


class Other(Synapse):
    value: int = 0


def other_forward(synapse: Other) -> Other:
    return synapse


def bl_builtin_tuple(synapse: Dummy) -> tuple[bool, str]:
    return False, ""


def bl_typing_tuple(synapse: Dummy) -> typing.Tuple[bool, str]:
    return False, ""


def bl_bool(synapse: Dummy) -> bool:
    return False


def bl_wrong_return(synapse: Dummy) -> str:
    return ""


def bl_wrong_param(synapse: Other) -> tuple[bool, str]:
    return False, ""


def prio(synapse: Dummy) -> float:
    return 1.0


def prio_wrong(synapse: Dummy) -> str:
    return "high"


def verify_ok(synapse: Dummy) -> None:
    pass


def verify_wrong(synapse: Dummy) -> bool:
    return True


async def async_forward(synapse: Dummy) -> Dummy:
    return synapse


def test_attach_names_the_endpoint_after_the_annotation_and_chains() -> None:
    axon = build_axon()
    returned = axon.attach(
        forward_fn=dummy_forward, blacklist_fn=bl_builtin_tuple, priority_fn=prio, verify_fn=verify_ok
    ).attach(forward_fn=other_forward)
    assert returned is axon
    assert list(axon.forward_fns) == ["Synapse", "Dummy", "Other"]
    assert axon.forward_class_types["Dummy"] is Dummy
    assert axon.blacklist_fns["Dummy"] is bl_builtin_tuple
    assert axon.priority_fns["Dummy"] is prio
    assert axon.verify_fns["Dummy"] is verify_ok
    assert axon.verify_fns["Other"] == axon.default_verify


@pytest.mark.parametrize("blacklist", [bl_builtin_tuple, bl_typing_tuple, bl_bool, lambda s: (False, "")])
def test_equivalent_blacklist_annotations_are_accepted(blacklist: Any) -> None:
    build_axon().attach(forward_fn=dummy_forward, blacklist_fn=blacklist)


def test_async_forward_is_accepted() -> None:
    axon = build_axon().attach(forward_fn=async_forward)
    assert axon.endpoints["Dummy"].forward_is_async


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"blacklist_fn": bl_wrong_return},
            "The blacklist_fn function must have the signature: blacklist( synapse: Dummy ) -> tuple[bool, str]",
        ),
        (
            {"blacklist_fn": bl_wrong_param},
            "The blacklist_fn function must have the signature: blacklist( synapse: Dummy ) -> tuple[bool, str]",
        ),
        (
            {"priority_fn": prio_wrong},
            "The priority_fn function must have the signature: priority( synapse: Dummy ) -> float",
        ),
        (
            {"verify_fn": verify_wrong},
            "The verify_fn function must have the signature: verify( synapse: Dummy ) -> None",
        ),
        (
            {"verify_fn": lambda a, b: None},
            "The verify_fn function must have the signature: verify( synapse: Dummy ) -> None",
        ),
    ],
)
def test_wrong_hook_signatures_fail_with_the_seed_messages(kwargs: dict, message: str) -> None:
    with pytest.raises(AssertionError) as info:
        build_axon().attach(forward_fn=dummy_forward, **kwargs)
    assert str(info.value) == message


def test_forward_must_take_a_synapse() -> None:
    def no_args() -> Dummy:
        return Dummy(input=0)

    def not_a_synapse(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="has no arguments"):
        build_axon().attach(forward_fn=no_args)
    with pytest.raises(AssertionError, match="The first argument of forward_fn must inherit from Synapse"):
        build_axon().attach(forward_fn=not_a_synapse)


class Unmappable(Synapse):
    ok: int = 0
    blob: Any = None


def unmappable_forward(synapse: Unmappable) -> Unmappable:
    return synapse


class Opted(Synapse):
    blob: Any = None
    proto_json_fields: typing.ClassVar[tuple[str, ...]] = ("blob",)


def opted_forward(synapse: Opted) -> Opted:
    return synapse


def test_unsupported_field_type_is_refused_at_attach_naming_the_field() -> None:
    with pytest.raises(SchemaError, match=r"Unmappable\.blob"):
        build_axon().attach(forward_fn=unmappable_forward)
    axon = build_axon().attach(forward_fn=opted_forward)  # opting in carries it as JSON
    assert axon.endpoints["Opted"].schema.field_names == ("blob",)


# -- forward return annotations the SDK accepts ---------------------------------------------


def forward_any(synapse: Dummy) -> Any:
    synapse.output = synapse.input + 1
    return synapse


def forward_base(synapse: Dummy) -> Synapse:
    synapse.output = synapse.input + 2
    return synapse


def forward_unannotated(synapse: Dummy):  # type: ignore[no-untyped-def]
    synapse.output = synapse.input + 3
    return synapse


async def forward_any_async(synapse: Dummy) -> typing.Any:
    synapse.output = synapse.input + 4
    return synapse


@pytest.mark.parametrize(
    ("forward", "added"), [(forward_any, 1), (forward_base, 2), (forward_unannotated, 3), (forward_any_async, 4)]
)
async def test_forward_returning_any_synapse_or_unannotated_is_attached_and_served(forward, added: int) -> None:
    async with serve_axon(forward) as h:
        result = await h.call(Dummy(input=10))
    assert result.dendrite.status_code == 200, result.dendrite.status_message
    assert result.output == 10 + added


def forward_other(synapse: Dummy) -> Other:
    return Other()


def forward_int(synapse: Dummy) -> int:
    return 0


def forward_none(synapse: Dummy) -> None:
    return None


@pytest.mark.parametrize("forward", [forward_other, forward_int, forward_none])
def test_forward_returning_another_type_fails_with_the_seed_message(forward) -> None:
    with pytest.raises(AssertionError) as info:
        build_axon().attach(forward_fn=forward)
    assert str(info.value) == "The forward_fn function must have the signature: forward( synapse: Dummy ) -> Dummy"
