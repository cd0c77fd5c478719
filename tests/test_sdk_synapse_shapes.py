"""Synapse shapes Bittensor SDK 10.5 still accepts, ported unchanged.

- a field declared ``frozen=True`` or, pydantic v1 style, ``allow_mutation=False``;
- ``required_hash_fields`` declared as a pydantic field (the deprecated form of the
  subnet template's streaming tutorial) instead of a class variable.

The Dendrite keeps the answer and skips the fields it cannot set, as the SDK's does,
and the body hash covers what the SDK's ``Synapse.body_hash`` covers.
"""

from __future__ import annotations

import warnings
from typing import AsyncIterator, List, Optional

import pydantic
import pytest

from axon_grpc import StreamingSynapse, Synapse
from axon_grpc.synapse import get_hash, hash_fields_of
from axon_grpc.testing import serve_axon

from .test_bridge_client import serve_bridge

with warnings.catch_warnings():
    # pydantic warns at class definition: `allow_mutation` is deprecated, and a field
    # named `required_hash_fields` shadows the base class's class variable.
    warnings.simplefilter("ignore")

    class Frozen(Synapse):
        question: str = pydantic.Field("", frozen=True)
        answer: Optional[str] = None

        required_hash_fields = ("question",)

    class Immutable(Synapse):
        question: str = pydantic.Field("", allow_mutation=False)
        answer: Optional[str] = None

    class FieldHashed(Synapse):
        """``required_hash_fields`` as a field, its names out of declaration order."""

        a: int = 0
        b: List[int] = pydantic.Field(default_factory=list)
        c: str = ""
        required_hash_fields: List[str] = pydantic.Field(["c", "a"], allow_mutation=False)

    class StreamPrompting(StreamingSynapse):
        """The subnet template's streaming tutorial synapse, as it is written there."""

        roles: List[str] = pydantic.Field(..., title="Roles", allow_mutation=False)
        messages: List[str] = pydantic.Field(..., title="Messages", allow_mutation=False)
        required_hash_fields: List[str] = pydantic.Field(
            ["messages"], title="Required Hash Fields", allow_mutation=False
        )
        completion: str = pydantic.Field("", title="Completion")


async def frozen_forward(synapse: Frozen) -> Frozen:
    synapse.answer = synapse.question.upper()
    return synapse


async def immutable_forward(synapse: Immutable) -> Immutable:
    synapse.answer = synapse.question[::-1]
    return synapse


async def field_hashed_forward(synapse: FieldHashed) -> FieldHashed:
    synapse.c = f"{synapse.a}:{sum(synapse.b)}"
    return synapse


async def prompting_forward(synapse: StreamPrompting) -> AsyncIterator[str]:
    words = [m.upper() for m in synapse.messages]
    for word in words:
        yield word
    synapse.completion = " ".join(words)


def sdk_body_hash(values: list[object]) -> str:
    """SDK 10.5's recipe, written out: SHA3 of the joined SHA3s of ``str`` of each value."""
    return get_hash("".join(get_hash(str(v)) for v in values))


# -- what is hashed -----------------------------------------------------------------------


def test_class_variable_form_hashes_the_names_in_their_order() -> None:
    assert hash_fields_of(Frozen) == ("question",)
    assert hash_fields_of(Frozen(question="q")) == ("question",)
    assert hash_fields_of(Immutable) == ()
    assert Frozen(question="q").body_hash == sdk_body_hash(["q"])
    assert Immutable(question="q").body_hash == get_hash("")


def test_field_form_hashes_the_default_names_in_declaration_order() -> None:
    assert hash_fields_of(FieldHashed) == ("a", "c")
    synapse = FieldHashed(a=3, b=[1, 2], c="x")
    assert synapse.body_hash == sdk_body_hash([3, "x"])
    # what an instance (a caller) puts in the field does not change what is hashed
    tampered = FieldHashed(a=3, c="x", required_hash_fields=["b"])
    assert hash_fields_of(tampered) == ("a", "c") and tampered.body_hash == synapse.body_hash


def test_the_streaming_tutorial_synapse_hashes_its_messages() -> None:
    synapse = StreamPrompting(roles=["user"], messages=["hi", "there"])
    assert hash_fields_of(synapse) == ("messages",)
    assert synapse.body_hash == sdk_body_hash([["hi", "there"]])


# -- the Dendrite over gRPC -------------------------------------------------------------


@pytest.mark.parametrize(
    ("forward", "synapse", "answer"),
    [(frozen_forward, Frozen(question="why"), "WHY"), (immutable_forward, Immutable(question="abc"), "cba")],
)
async def test_a_frozen_field_does_not_lose_the_answer(forward, synapse, answer) -> None:
    async with serve_axon(forward) as h:
        result = await h.call(synapse)
    assert result.dendrite.status_code == 200, result.dendrite.status_message
    assert result.answer == answer and result.question == synapse.question


async def test_a_field_declared_required_hash_fields_is_called_and_answered() -> None:
    async with serve_axon(field_hashed_forward) as h:
        result = await h.call(FieldHashed(a=2, b=[3, 4]))
    assert result.dendrite.status_code == 200, result.dendrite.status_message
    assert result.c == "2:7"
    assert result.required_hash_fields == ["c", "a"]


async def test_the_streaming_tutorial_synapse_streams_and_answers() -> None:
    async with serve_axon(prompting_forward) as h:
        stream = await h.dendrite.forward(
            h.info, StreamPrompting(roles=["user"], messages=["a", "b"]), streaming=True, deserialize=False
        )
        items = [item async for item in stream]
        plain = await h.dendrite.forward(h.info, StreamPrompting(roles=["user"], messages=["c"]), deserialize=False)
    assert items[:2] == ["A", "B"]
    final = items[-1]
    assert final.dendrite.status_code == 200, final.dendrite.status_message
    assert final.completion == "A B" and final.messages == ["a", "b"]
    assert plain.dendrite.status_code == 200 and plain.completion == "C"


# -- a legacy (SDK 10.5 recipe) client over the HTTP bridge --------------------------------


async def test_a_frozen_field_over_the_bridge() -> None:
    async with serve_bridge(frozen_forward) as b:
        response = await b.client.call(Frozen(question="why"))
    assert response.status == 200, response.text
    assert response.json["answer"] == "WHY"


async def test_a_field_declared_required_hash_fields_over_the_bridge() -> None:
    async with serve_bridge(field_hashed_forward) as b:
        response = await b.client.call(FieldHashed(a=2, b=[3, 4]))
    assert response.status == 200, response.text
    assert response.json["c"] == "2:7"
