"""Legacy HTTP bodies: JSON objects, refused the way the legacy server refuses them.

Anything that is not JSON at all is the legacy 422 (:class:`NotJson`, carrying the parse
error the answer names); JSON no synapse can hold (another shape, nesting past 200, a
number of more than 4300 digits, a lone surrogate) is 400 with a short fixed reason.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from pydantic_core import from_json

from axon_grpc.errors import AxonError, Reason, Status, SynapseParsingError
from axon_grpc.metrics.observer import HTTP
from axon_grpc.synapse import Synapse, answer_body_hash

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.server.endpoints import Endpoint

#: Reasons of ``pydantic_core.from_json`` for JSON no synapse holds, and the words of the 400.
_JSON_REFUSALS = (
    ("recursion limit exceeded", "nested too deeply"),
    ("number out of range", "a number is too long"),
    ("lone leading surrogate", "a lone surrogate"),
    ("invalid unicode code point", "not UTF-8 JSON"),
    ("unexpected end of hex escape", "a lone surrogate"),
)


def load_json_object(raw: bytes, name: str) -> dict[str, Any]:
    """The request body as a JSON object (empty: ``{}``).

    Raises :class:`json.JSONDecodeError` when it is not JSON (the legacy 422) and
    :class:`~axon_grpc.errors.SynapseParsingError` when it is JSON of another shape, or
    JSON no synapse holds: nested more than 200 deep, a number of more than 4300 digits, a
    lone surrogate (400, with a short fixed reason).
    """
    if not raw:
        return {}
    try:
        payload = from_json(raw)
    except ValueError as e:
        reason = str(e)
        for prefix, said in _JSON_REFUSALS:
            if reason.startswith(prefix):
                raise SynapseParsingError(f"Improperly formatted request. Could not parse body: {said}") from None
        try:  # not JSON at all: the legacy 422 names where, as the standard parser says it
            json.loads(raw)
        except UnicodeDecodeError:
            raise SynapseParsingError("Improperly formatted request. Could not parse body: not UTF-8 JSON") from None
        except (RecursionError, ValueError) as not_json:
            if isinstance(not_json, json.JSONDecodeError):
                raise
        raise SynapseParsingError("Improperly formatted request. Could not parse body: invalid JSON") from None
    if not isinstance(payload, dict):
        raise SynapseParsingError(
            f"Improperly formatted request. Could not parse body into synapse of type {name}: "
            f"expected a JSON object, got {type(payload).__name__}"
        )
    return payload


class NotJson(AxonError):
    """An HTTP body that is not JSON at all: the legacy server's 422, unsigned, its answer
    naming where the parse failed (``error``, which the answer echoes)."""

    status_code = Status.UNPROCESSABLE
    reason = Reason.INVALID
    signed = False

    def __init__(self, error: json.JSONDecodeError) -> None:
        super().__init__("Request body is not valid JSON")
        self.error = error
        self.echo = error


def synapse_data(
    endpoint: Endpoint, payload: Mapping[str, Any], base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The body-to-synapse step of a JSON body: ``base`` (by default the zero values of an
    endpoint that fills them, else nothing) with the user fields the body holds."""
    if base is None:
        base = endpoint.defaults_for_missing() if endpoint.zero_values else {}
    data = dict(base)
    data.update((key, payload[key]) for key in endpoint.user_fields if key in payload)
    return data


class JsonCodec:
    """The legacy JSON body (:class:`~axon_grpc.server.call.Codec`): the hash is over the
    synapse's ``required_hash_fields``, an answer's over its fields."""

    transport = HTTP
    names_rules = False  # the legacy answers keep the SDK 10.5 axon's words

    @staticmethod
    def check_message_hash(path: str, body: bytes, claimed: str) -> bool:
        return False

    @staticmethod
    def decode(endpoint: Endpoint, body: bytes) -> tuple[dict[str, Any], Any]:
        try:
            payload = load_json_object(body, endpoint.name)
        except json.JSONDecodeError as e:
            raise NotJson(e) from None
        return synapse_data(endpoint, payload), payload

    @staticmethod
    def answer_hash(endpoint: Endpoint, synapse: Synapse) -> tuple[bytes | None, str]:
        return None, answer_body_hash(synapse)


JSON_CODEC = JsonCodec()
