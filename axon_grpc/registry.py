"""Where axons are served: a subtensor, or the embedded local registry.

``Axon.serve(netuid, subtensor)`` calls ``subtensor.serve_axon(netuid=..., axon=...,
certificate=...)``; any object with that method is a :class:`Registry` (a Bittensor
SDK subtensor is one). Without a subtensor the axon is recorded in a
:class:`LocalRegistry`: a SQLite file (standard library) holding one
:class:`~axon_grpc.info.AxonInfo` per ``(netuid, hotkey)``, which ``Dendrite`` and
``axon-grpc call --netuid N`` resolve axons from::

    axon.serve(netuid=1)                         # recorded locally
    axons = LocalRegistry().axons(1)             # list[AxonInfo]
    results = await dendrite.forward(axons, Dummy(input=3))
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Protocol, runtime_checkable

from axon_grpc.info import AxonInfo
from axon_grpc.server.config import data_dir

#: Environment variable naming the registry file (default: ``data_dir()/registry.sqlite``).
REGISTRY_ENV = "AXON_GRPC_REGISTRY"

_INFO_FIELDS = tuple(f.name for f in fields(AxonInfo))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS axons (
    netuid INTEGER NOT NULL,
    hotkey TEXT NOT NULL,
    coldkey TEXT NOT NULL,
    version INTEGER NOT NULL,
    ip TEXT NOT NULL,
    port INTEGER NOT NULL,
    ip_type INTEGER NOT NULL,
    protocol INTEGER NOT NULL,
    placeholder1 INTEGER NOT NULL,
    placeholder2 INTEGER NOT NULL,
    certificate TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (netuid, hotkey)
)
"""


@runtime_checkable
class Registry(Protocol):
    """Something an axon can be served on (a subtensor, or the local registry)."""

    def serve_axon(self, netuid: int, axon: Any, certificate: Any = None) -> Any:
        """Publish ``axon.info()`` on subnet ``netuid``."""
        ...  # pragma: no cover


@dataclass(frozen=True)
class Entry:
    """One registered axon: its subnet, its info, and when it was last served."""

    netuid: int
    info: AxonInfo
    updated_at: float
    certificate: str | None = None


def default_path() -> Path:
    """``$AXON_GRPC_REGISTRY``, else ``registry.sqlite`` under :func:`~axon_grpc.server.axon.data_dir`."""

    return Path(os.environ.get(REGISTRY_ENV) or data_dir() / "registry.sqlite").expanduser()


def _certificate_text(certificate: Any) -> str | None:
    if certificate is None:
        return None
    if isinstance(certificate, (bytes, bytearray)):
        data = bytes(certificate)
        return data.decode("ascii") if data.lstrip().startswith(b"-----BEGIN ") else data.hex()  # PEM stays text
    return str(certificate)


class LocalRegistry:
    """A registry in one SQLite file; safe to share between processes (one transaction per call)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30.0)
        connection.execute(_SCHEMA)
        return connection

    # -- writing ------------------------------------------------------------------------------
    def serve_axon(self, netuid: int, axon: Any, certificate: Any = None) -> bool:
        """Record ``axon.info()`` for ``(netuid, hotkey)``, replacing an earlier record."""
        self.register(netuid, axon.info(), certificate)
        return True

    def register(self, netuid: int, info: AxonInfo, certificate: Any = None) -> None:
        """Insert or update the record of ``info.hotkey`` on ``netuid``."""
        row = {name: getattr(info, name) for name in _INFO_FIELDS}
        row.update(netuid=int(netuid), certificate=_certificate_text(certificate), updated_at=time.time())
        columns = ", ".join(row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in row if c not in ("netuid", "hotkey"))
        sql = (
            f"INSERT INTO axons ({columns}) VALUES ({', '.join(':' + c for c in row)}) "
            f"ON CONFLICT (netuid, hotkey) DO UPDATE SET {updates}"
        )
        with closing(self._connect()) as connection, connection:
            connection.execute(sql, row)

    def remove(self, netuid: int, hotkey: str) -> bool:
        """Forget ``hotkey`` on ``netuid``; whether a record was removed."""
        with closing(self._connect()) as connection, connection:
            cursor = connection.execute("DELETE FROM axons WHERE netuid = ? AND hotkey = ?", (int(netuid), hotkey))
            return cursor.rowcount > 0

    # -- reading ------------------------------------------------------------------------------
    def entries(self, netuid: int | None = None) -> list[Entry]:
        """Every record (of ``netuid`` when given), by netuid then hotkey."""
        return list(self._rows(netuid))

    def axons(self, netuid: int) -> list[AxonInfo]:
        """The AxonInfo of every axon registered on ``netuid`` (what a Dendrite calls)."""
        return [entry.info for entry in self._rows(netuid)]

    def netuids(self) -> list[int]:
        """The subnets with at least one registered axon."""
        if not self.path.exists():
            return []
        with closing(self._connect()) as connection:
            return [row[0] for row in connection.execute("SELECT DISTINCT netuid FROM axons ORDER BY netuid")]

    def _rows(self, netuid: int | None) -> Iterator[Entry]:
        if not self.path.exists():
            return
        names = ", ".join(_INFO_FIELDS)
        sql = f"SELECT netuid, {names}, updated_at, certificate FROM axons"
        params: tuple[Any, ...] = ()
        if netuid is not None:
            sql += " WHERE netuid = ?"
            params = (int(netuid),)
        sql += " ORDER BY netuid, hotkey"
        with closing(self._connect()) as connection:
            rows = connection.execute(sql, params).fetchall()
        for row in rows:
            info = AxonInfo(**dict(zip(_INFO_FIELDS, row[1 : 1 + len(_INFO_FIELDS)])))
            yield Entry(netuid=row[0], info=info, updated_at=row[-2], certificate=row[-1])

    def __repr__(self) -> str:
        return f"LocalRegistry({str(self.path)!r})"


__all__ = ["REGISTRY_ENV", "Entry", "LocalRegistry", "Registry", "default_path"]
