"""The exception names of Bittensor SDK 10.5, their statuses and the synapse they carry."""

from __future__ import annotations

import grpc
import pytest

import axon_grpc
from axon_grpc import Synapse
from axon_grpc.errors import grpc_status_for, status_of

#: SDK 10.5's ``bittensor.core.errors`` axon exceptions, and the status each answers.
SDK_NAMES = {
    "InvalidRequestNameError": 400,
    "SynapseParsingError": 400,
    "SynapseException": 500,
    "UnknownSynapseError": 404,
    "NotVerifiedException": 401,
    "BlacklistedException": 403,
    "PriorityException": 503,
    "PostProcessException": 500,
    "RunException": 500,
    "InternalServerError": 500,
    "SynapseDendriteNoneException": 500,
}


@pytest.mark.parametrize(("name", "status"), sorted(SDK_NAMES.items()))
def test_each_sdk_exception_name_is_exported_with_its_status(name: str, status: int) -> None:
    assert name in axon_grpc.__all__
    exc_type = getattr(axon_grpc, name)
    assert issubclass(exc_type, axon_grpc.AxonError)
    synapse = Synapse()
    error = exc_type("reason", synapse)
    assert error.message == "reason" and str(error) == "reason" and error.synapse is synapse
    assert status_of(error) == status
    assert grpc_status_for(status_of(error)) is not grpc.StatusCode.OK


def test_the_sdk_subclasses_of_synapse_exception_are_caught_as_one() -> None:
    for name in (
        "UnknownSynapseError",
        "NotVerifiedException",
        "BlacklistedException",
        "PriorityException",
        "PostProcessException",
        "RunException",
        "InternalServerError",
        "SynapseDendriteNoneException",
    ):
        assert issubclass(getattr(axon_grpc, name), axon_grpc.SynapseException), name


def test_default_messages_and_keyword_synapse_are_the_sdks() -> None:
    synapse = Synapse()
    assert axon_grpc.SynapseException().message == "Synapse Exception"
    assert axon_grpc.SynapseDendriteNoneException(synapse=synapse).message == "Synapse Dendrite is None"
    assert axon_grpc.RunException("busy", synapse=synapse).synapse is synapse
    assert axon_grpc.RunException("busy").synapse is None
