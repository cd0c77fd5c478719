"""Issue 13.2: a call signed for one synapse never runs another.

Over gRPC the signed body hash covers the method path as well as the message bytes;
over the legacy HTTP bridge (whose signed message cannot change) a ``name`` header that
disagrees with the route is refused.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import grpc

from axon_grpc import Synapse
from axon_grpc.auth.legacy import grpc_body_hash
from axon_grpc.testing import serve_axon

from .support import Dummy, RawCaller, dummy_forward
from .test_bridge_client import serve_bridge

BODY = b"\x08\x03"  # Dummy(input=3); the same bytes decode as Other(input=3)


class Other(Synapse):
    """Shaped like Dummy (same field, same hash fields), so only the binding can tell them apart."""

    input: int = 0
    output: Optional[int] = None

    required_hash_fields = ("input",)


ran: list[int] = []


def other_forward(synapse: Other) -> Other:
    ran.append(synapse.input)
    synapse.output = -1
    return synapse


def test_the_hash_is_over_the_method_a_newline_and_the_bytes() -> None:
    expected = hashlib.sha3_256(b"/axon.v1.Axon/Dummy\n" + BODY).hexdigest()
    assert grpc_body_hash("/axon.v1.Axon/Dummy", BODY) == expected
    assert grpc_body_hash("/axon.v1.Axon/Other", BODY) != expected


async def test_grpc_call_signed_for_dummy_is_refused_by_another_method() -> None:
    ran.clear()
    async with serve_axon(dummy_forward, other_forward) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.info.hotkey)
        try:
            signed_for_dummy = raw.metadata(BODY, method="Dummy")
            status, _, details, _ = await raw.call("Other", BODY, signed_for_dummy)
            assert status is grpc.StatusCode.INVALID_ARGUMENT, details
            assert details.startswith("body hash does not match") and details.endswith("(rule R7)")
            assert ran == []
            status, response, details, _ = await raw.call("Dummy", BODY, raw.metadata(BODY, method="Dummy"))
            assert status is grpc.StatusCode.OK and response == b"\x08\x03\x10\x06", details
            status, _, details, _ = await raw.call("Other", BODY, raw.metadata(BODY, method="Other"))
            assert status is grpc.StatusCode.OK and ran == [3], details
        finally:
            await raw.close()


async def test_grpc_name_metadata_must_match_the_method() -> None:
    async with serve_axon(dummy_forward, other_forward) as h:
        raw = RawCaller(f"127.0.0.1:{h.axon.port}", h.info.hotkey)
        try:
            status, _, details, _ = await raw.call("Other", BODY, raw.metadata(BODY, method="Other", name="Dummy"))
            assert status is grpc.StatusCode.INVALID_ARGUMENT
            assert (
                details == "Improperly formatted request. The name header does not match the synapse called (rule R6)"
            )
        finally:
            await raw.close()


async def test_http_request_signed_for_dummy_is_refused_at_another_route() -> None:
    ran.clear()
    async with serve_bridge(dummy_forward, other_forward) as b:
        headers, body = b.client.prepare(Dummy(input=3))
        assert headers["name"] == "Dummy"
        response = await b.client.send("/Other", headers, body)
        assert response.status == 400, response.text
        assert response.message == "Improperly formatted request. The name header does not match the synapse called"
        assert ran == []
        assert b.verifies(response)  # an error answer, signed as every other
        assert (await b.client.call(Dummy(input=4))).status == 200
        assert (await b.client.call(Other(input=4))).json["output"] == -1
