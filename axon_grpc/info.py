"""AxonInfo: what an axon advertises (Bittensor's chain-data record of a served axon)."""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import asdict, dataclass


@dataclass
class AxonInfo:
    """Address and identity of a served axon, as registered on a subnet."""

    version: int
    ip: str
    port: int
    ip_type: int
    hotkey: str
    coldkey: str
    protocol: int = 4
    placeholder1: int = 0
    placeholder2: int = 0

    def __post_init__(self) -> None:
        version = ip_version(self.ip)
        if int(self.ip_type) != version:
            raise ValueError(f"AxonInfo ip {self.ip!r} is an IPv{version} address, but ip_type is {self.ip_type}")

    @property
    def is_serving(self) -> bool:
        return self.ip != "0.0.0.0"

    def ip_str(self) -> str:
        """``host:port``, with brackets around IPv6 hosts."""
        host = f"[{self.ip}]" if self.ip_type == 6 else self.ip
        return f"{host}:{self.port}"

    def to_string(self) -> str:
        """A JSON line of every field."""
        return json.dumps(asdict(self), sort_keys=True)

    def __str__(self) -> str:
        return f"AxonInfo({self.hotkey}, {self.ip_str()}, version {self.version})"


def ip_version(ip: str) -> int:
    """4 or 6 for an IP address literal (IPv6 may be in brackets).

    Anything else (a host name, a typo, an empty string) raises ``ValueError``: the
    chain records an axon's address as a number, so only an IP can be advertised.
    """
    try:
        return ipaddress.ip_address(str(ip).strip("[]")).version
    except ValueError:
        raise ValueError(f"{ip!r} is not an IPv4 or IPv6 address (an axon advertises an IP, not a host name)") from None


def advertised_address(bind_ip: str) -> str:
    """The address to advertise for an axon bound to ``bind_ip``: that address, or for a
    wildcard bind this host's name's address (127.0.0.1 when it has none)."""
    host = bind_ip.strip("[]")
    if host not in ("", "::", "0.0.0.0"):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def split_address(address: str) -> tuple[str | None, int | None]:
    """``("1.2.3.4", 5678)`` from ``1.2.3.4:5678``, ``("::1", 5678)`` from ``[::1]:5678``."""
    if not address:
        return None, None
    host, sep, port = address.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        return address.strip("[]"), None  # no port, or a bare IPv6 address
    host = host.strip("[]")
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    try:
        return host, int(port)
    except ValueError:
        return host, None
