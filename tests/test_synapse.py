"""Synapse and TerminalInfo: Bittensor's field set, headers, hashes and status properties."""

from __future__ import annotations

import base64
import json
from typing import Optional

import pytest
from pydantic import ValidationError

from axon_grpc import Synapse, TerminalInfo
from axon_grpc.synapse import EMPTY_HASH, get_hash

from .support import CONFORMANCE, Dummy


class Listy(Synapse):
    items: list[int]
    meta: dict[str, int] = {}
    note: Optional[str] = None

    required_hash_fields = ("items", "meta")


def test_base_fields_and_name() -> None:
    s = Dummy(input=3)
    assert s.name == "Dummy"
    assert s.timeout == 12.0 and s.total_size == 0 and s.header_size == 0
    assert s.computed_body_hash == ""
    assert isinstance(s.dendrite, TerminalInfo) and isinstance(s.axon, TerminalInfo)
    with pytest.raises(ValidationError):
        s.name = "Other"  # frozen


def test_body_hash_matches_the_recorded_vector() -> None:
    # Worked example from the real SDK: Dummy(input=3) with required_hash_fields=("input",).
    assert get_hash("3") == "1bf0b26eb2090599dd68cbb42c86a674cb07ab7adc103ad3ccdf521bb79056b9"
    assert Dummy(input=3).body_hash == "a17cffcb9dae15bad7684089c1a5e28670408951a2134f0296e8fca3ed4c94a9"
    assert Synapse().body_hash == get_hash("") == EMPTY_HASH
    assert EMPTY_HASH == "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"


def test_body_hash_uses_python_str_of_dumped_values() -> None:
    s = Listy(items=[1, 2], meta={"a": 1})
    expected = get_hash(get_hash("[1, 2]") + get_hash("{'a': 1}"))
    assert s.body_hash == expected


def test_to_headers_matches_the_legacy_shape() -> None:
    s = Dummy(input=3)
    s.dendrite = TerminalInfo(nonce=5, hotkey="5Abc", version=10005000)
    headers = s.to_headers()
    assert headers["name"] == "Dummy"
    assert headers["timeout"] == "12.0"
    assert headers["bt_header_dendrite_nonce"] == "5"
    assert headers["bt_header_dendrite_hotkey"] == "5Abc"
    assert "bt_header_dendrite_ip" not in headers  # None fields are omitted
    assert headers["bt_header_input_obj_input"] == "MA=="  # base64('0'): the type's default
    assert headers["computed_body_hash"] == s.body_hash
    assert int(headers["total_size"]) > 0 and int(headers["header_size"]) > 0
    assert "bt_header_input_obj_output" not in headers  # only required fields


def test_headers_round_trip_and_input_obj_values() -> None:
    headers = {
        "name": "Dummy",
        "timeout": "3.5",
        "bt_header_dendrite_nonce": "123",
        "bt_header_dendrite_hotkey": "5Abc",
        "bt_header_axon_port": "8091",
        "bt_header_input_obj_input": base64.b64encode(b"13").decode(),
        "bt_header_input_obj_output": "!!not base64!!",  # undecodable: ignored
        "computed_body_hash": "abc",
        "unrelated": "ignored",
    }
    s = Dummy.from_headers(headers)
    assert s.timeout == 3.5
    assert s.dendrite.nonce == 123 and s.dendrite.hotkey == "5Abc"
    assert s.axon.port == 8091
    assert s.input == 13 and s.output is None
    assert s.computed_body_hash == "abc"


def test_status_properties() -> None:
    s = Dummy(input=1)
    for code, prop in [(200, "is_success"), (408, "is_timeout"), (403, "is_blacklist"), (401, "failed_verification")]:
        s.dendrite.status_code = code
        assert getattr(s, prop) is True
        assert s.is_failure is (code != 200)
    s.dendrite.status_code = 500
    assert not (s.is_success or s.is_timeout or s.is_blacklist or s.failed_verification)


def test_terminal_info_casts_strings() -> None:
    info = TerminalInfo(status_code="200", process_time="0.5", port="8091", nonce="7")
    assert (info.status_code, info.process_time, info.port, info.nonce) == (200, 0.5, 8091, 7)


def test_get_total_size_updates_the_field() -> None:
    s = Listy(items=list(range(100)))
    small = Listy(items=[]).get_total_size()
    assert s.get_total_size() == s.total_size > small


def test_required_fields() -> None:
    assert Dummy.get_required_fields() == ["input"]
    assert Listy.get_required_fields() == ["items"]


def test_recorded_request_body_parses_and_hashes() -> None:
    recorded = json.loads((CONFORMANCE / "request_dummy_input3.json").read_text())
    body = recorded["request"]["body_json"]
    headers = {k: v for k, v in recorded["request"]["headers"]}
    s = Dummy(**body)
    assert s.input == 3
    assert s.body_hash == headers["computed_body_hash"]
    from_headers = Dummy.from_headers({k.lower(): v for k, v in headers.items()})
    assert from_headers.input == 0  # the placeholder, not the value
    assert from_headers.dendrite.nonce == 1795716669893194313
