"""What both of a Dendrite's transports do with an answer: read the axon's terminal info,
copy the answered fields into the caller's synapse, and say how the call went."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from axon_grpc.synapse import AXON_PREFIX, Synapse, TerminalInfo

#: Client-side status of an answer that failed ``verify_response`` (its fields are not kept).
UNVERIFIED_ANSWER = 422
#: Client-side status of a call that never reached an axon answering it (refused, reset).
UNAVAILABLE = 503
#: Client-side status of a call that ran out of time.
TIMEOUT = 408


@dataclass
class Result:
    """How one call went: the status for ``synapse.dendrite`` and whether the axon spoke
    the transport's protocol at all (False: ``auto`` may try the other one)."""

    status: int
    message: str
    spoken: bool = True


def timeout_result(timeout: float) -> Result:
    return Result(TIMEOUT, f"Request timeout after {timeout} seconds", spoken=False)


def unavailable_result(address: str, name: str, spoken: bool = False) -> Result:
    return Result(UNAVAILABLE, f"Service at {address}/{name} unavailable.", spoken)


def unverified_result(reason: str) -> Result:
    return Result(UNVERIFIED_ANSWER, f"Answer not verified: {reason}")


def fill(synapse: Synapse, values: dict[str, Any]) -> None:
    """Copy the answer's fields into ``synapse``, skipping those it cannot set.

    As the SDK 10.5 dendrite does: a field declared ``frozen=True`` (or
    ``allow_mutation=False``) keeps the value the caller sent, and so does a
    ``required_hash_fields`` declared as a field; the rest of the answer is kept.
    """
    for key, value in values.items():
        try:
            setattr(synapse, key, value)
        except (AttributeError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
            continue


def read_axon(synapse: Synapse, pairs: Iterable[tuple[str, Any]] | None) -> None:
    """Merge the ``bt_header_axon_*`` pairs (trailing metadata or headers) into ``synapse.axon``."""
    values = {
        key[len(AXON_PREFIX) :]: value
        for key, value in (pairs or ())
        if key.startswith(AXON_PREFIX) and key[len(AXON_PREFIX) :] in TerminalInfo.model_fields
    }
    if values:
        current = synapse.axon.model_dump() if synapse.axon is not None else {}
        try:
            synapse.axon = TerminalInfo(**{**current, **values})
        except ValueError:
            pass


def axon_status(synapse: Synapse, default_message: str = "Success") -> tuple[int | None, str]:
    """The status the axon wrote into ``synapse.axon`` (None when it wrote none)."""
    axon = synapse.axon
    if axon is not None and axon.status_code is not None:
        return axon.status_code, axon.status_message or default_message
    return None, default_message
