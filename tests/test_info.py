"""AxonInfo and ip_version: only an IP address can be advertised."""

from __future__ import annotations

import pytest

from axon_grpc import Axon, AxonInfo
from axon_grpc.info import ip_version
from axon_grpc.testing import build_axon

HOTKEY = "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM"


@pytest.mark.parametrize(("ip", "version"), [("203.0.113.5", 4), ("0.0.0.0", 4), ("2001:db8::1", 6), ("[::1]", 6)])
def test_ip_version_of_addresses(ip: str, version: int) -> None:
    assert ip_version(ip) == version


@pytest.mark.parametrize("ip", ["my-miner.example", "localhost", "256.1.1.1", "1.2.3", "", "::g"])
def test_ip_version_refuses_what_is_not_an_ip(ip: str) -> None:
    with pytest.raises(ValueError, match="is not an IPv4 or IPv6 address"):
        ip_version(ip)


def test_axon_info_refuses_an_invalid_ip_or_a_wrong_type() -> None:
    with pytest.raises(ValueError, match="is not an IPv4 or IPv6 address"):
        AxonInfo(version=1, ip="not-an-ip", port=8091, ip_type=4, hotkey=HOTKEY, coldkey="")
    with pytest.raises(ValueError, match="is an IPv6 address, but ip_type is 4"):
        AxonInfo(version=1, ip="2001:db8::1", port=8091, ip_type=4, hotkey=HOTKEY, coldkey="")
    assert AxonInfo(version=1, ip="2001:db8::1", port=8091, ip_type=6, hotkey=HOTKEY, coldkey="").ip_str() == (
        "[2001:db8::1]:8091"
    )


@pytest.mark.parametrize("ip", ["my-miner.example", "999.0.0.1"])
def test_axon_refuses_an_invalid_external_ip_at_construction(ip: str) -> None:
    with pytest.raises(AssertionError, match=r"External IP: .* is not an IPv4 or IPv6 address"):
        build_axon(external_ip=ip)
    config = Axon.config(["--axon.external_ip", ip])
    with pytest.raises(AssertionError, match="External IP"):
        Axon.check_config(config)


def test_info_advertises_the_external_ip_with_its_version() -> None:
    assert build_axon(external_ip="2001:db8::7").info().ip_type == 6
    assert build_axon(external_ip="203.0.113.5").info().ip_type == 4


def test_info_refuses_a_bind_host_name_it_would_advertise() -> None:
    axon = build_axon(ip="localhost", external_ip=None)
    with pytest.raises(ValueError, match="'localhost' is not an IPv4 or IPv6 address"):
        axon.info()
