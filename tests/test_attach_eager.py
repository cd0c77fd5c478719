"""Hooks written without postponed annotations check the same way."""

import typing

from axon_grpc.testing import build_axon

from .support import Dummy, dummy_forward


def blacklist(synapse: Dummy) -> typing.Tuple[bool, str]:
    return False, ""


def priority(synapse: Dummy) -> float:
    return 0.5


def verify(synapse: Dummy) -> None:
    return None


def test_eager_annotations_are_accepted() -> None:
    axon = build_axon().attach(forward_fn=dummy_forward, blacklist_fn=blacklist, priority_fn=priority, verify_fn=verify)
    assert axon.endpoints["Dummy"].priority_fn is priority
