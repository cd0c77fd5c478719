"""The axon's terminal info as gRPC trailing metadata: every value, in order, as text and as raw headers."""

from __future__ import annotations

from axon_grpc.schema.contract import CONTRACT_ANNOUNCEMENT, CONTRACT_TRAILER
from axon_grpc.server.call import Outcome
from axon_grpc.synapse import Synapse, terminal_info
from axon_grpc.transports.grpc_codec import trailer_headers, trailing_metadata


def _outcome(**values: object) -> Outcome:
    synapse = Synapse()
    synapse.__dict__["axon"] = terminal_info(**values)
    return Outcome(200, "Success", synapse)


def test_each_value_is_printable_ascii_in_a_fixed_order() -> None:
    identity = {"version": 10_005_000, "uuid": "u-1", "hotkey": "5Hot", "ip": "1.2.3.4", "port": 8091}
    outcome = _outcome(
        status_code=401, status_message="naïve\n100%", process_time=1e-05, nonce=1_733_000_000_123_456_789, **identity
    )
    expected = (
        ("bt_header_axon_status_code", "401"),
        ("bt_header_axon_status_message", "na%C3%AFve%0A100%25"),
        ("bt_header_axon_process_time", "1e-05"),
        ("bt_header_axon_nonce", "1733000000123456789"),
        ("bt_header_axon_version", "10005000"),
        ("bt_header_axon_uuid", "u-1"),
        ("bt_header_axon_hotkey", "5Hot"),
        (CONTRACT_TRAILER, CONTRACT_ANNOUNCEMENT),
    )  # no signature (None), no ip or port (the caller dialled them)
    assert trailing_metadata(outcome) == expected
    assert trailer_headers(outcome) == [(k.encode(), v.encode()) for k, v in expected]
    signed = _outcome(status_code=200, status_message="Success", signature="0xab", **identity)
    assert ("bt_header_axon_signature", "0xab") in trailing_metadata(signed)
    assert trailing_metadata(signed)[-4:] == expected[-4:]  # the identity pairs, built once, reused
    other = _outcome(status_code=200, **{**identity, "hotkey": "5Other"})
    assert ("bt_header_axon_hotkey", "5Other") in trailing_metadata(other)


def test_an_answer_without_terminal_info_carries_the_contract_alone() -> None:
    outcome = Outcome(500, "x", Synapse())
    assert trailing_metadata(outcome) == ((CONTRACT_TRAILER, CONTRACT_ANNOUNCEMENT),)
    assert trailer_headers(outcome) == [(CONTRACT_TRAILER.encode(), CONTRACT_ANNOUNCEMENT.encode())]
