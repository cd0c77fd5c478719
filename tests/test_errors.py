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


def test_one_integer_status_table_and_the_grpc_edge_agree() -> None:
    from axon_grpc.errors import GRPC_STATUS, GrpcStatus, Status, grpc_status_number, status_of_grpc_number
    from axon_grpc.transports.grpc_codec import http_status_for

    assert set(GRPC_STATUS) == set(Status)  # every status an axon answers has its gRPC number
    for status in Status:
        number = grpc_status_number(status)
        assert grpc_status_for(status).value[0] == number  # grpc.StatusCode only at the edge, same table
    assert {code.value[0] for code in grpc.StatusCode} == set(GrpcStatus)
    assert grpc_status_number(Status.CLIENT_CLOSED) == GrpcStatus.CANCELLED
    assert grpc_status_number(999) == GrpcStatus.INTERNAL and status_of_grpc_number(99) == 500
    assert http_status_for(grpc.StatusCode.DEADLINE_EXCEEDED) == 408


def test_one_peer_parser_for_every_transport() -> None:
    from axon_grpc.server.call import parse_peer

    assert parse_peer("ipv4:127.0.0.1:5555") == ("127.0.0.1", 5555)  # grpc.aio
    assert parse_peer("ipv6:[::1]:5555") == ("::1", 5555)
    assert parse_peer("ipv6:[::ffff:10.0.0.7]:80") == ("10.0.0.7", 80)
    assert parse_peer("unix:/tmp/axon.sock") == ("/tmp/axon.sock", None)
    assert parse_peer(("::ffff:192.0.2.1", 4000)) == ("192.0.2.1", 4000)  # ASGI: the bridge, the Envoy edge
    assert parse_peer(["203.0.113.5", 81]) == ("203.0.113.5", 81)
    assert parse_peer(None) == (None, None) and parse_peer("") == (None, None)
