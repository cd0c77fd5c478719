"""Bittensor-layout keyfile wallets (unencrypted hotkeys only).

A hotkey lives at ``{path}/{name}/hotkeys/{hotkey}`` as JSON with ``accountId``,
``publicKey``, ``privateKey``, ``secretPhrase``, ``secretSeed`` and ``ss58Address``.
ed25519 hotkeys written here also carry ``"crypto": "ed25519"``; without it a
hotkey is sr25519.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from typing import Any, Mapping

from axon_grpc.auth.keys import CRYPTO_ED25519, CRYPTO_SR25519, SUPPORTED_CRYPTO, Keypair, ss58_decode
from axon_grpc.errors import InvalidAddress, KeyfileError
from axon_grpc.server.config import data_dir

logger = logging.getLogger("axon_grpc")

DEFAULT_WALLET_PATH = "~/.bittensor/wallets"

# Bittensor encrypted keyfiles: NaCl ($NACL), newer wallet format ($BT...),
# ansible-vault, and legacy Fernet tokens (base64 of 0x80 version byte).
_ENCRYPTED_MARKERS: tuple[bytes, ...] = (b"$NACL", b"$BT", b"$ANSIBLE_VAULT", b"gAAAAA")
_MAX_KEYFILE_BYTES = 1 << 20
_CRYPTO_FIELDS = ("crypto", "cryptoType")
_SDK_CRYPTO_TYPES = {0: CRYPTO_ED25519, 1: CRYPTO_SR25519}


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise ValueError(f"{what} must be a plain file name, not a path")
    return value


def _makedirs_private(directory: str) -> None:
    """Create ``directory`` and missing parents with mode 0o700 (existing ones untouched)."""
    missing: list[str] = []
    current = os.path.abspath(directory)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for item in reversed(missing):
        try:
            os.mkdir(item, 0o700)
        except FileExistsError:
            continue  # created concurrently (or not a directory: the next step fails)
        os.chmod(item, 0o700)  # mkdir's mode is masked by the umask


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def keyfile_data(keypair: Keypair) -> dict[str, Any]:
    """The Bittensor keyfile JSON fields for a keypair with a seed."""
    public_hex = "0x" + keypair.public_key.hex()
    data: dict[str, Any] = {
        "accountId": public_hex,
        "publicKey": public_hex,
        "privateKey": "0x" + keypair.private_key.hex(),
        "secretPhrase": None,
        "secretSeed": keypair.seed_hex,
        "ss58Address": keypair.ss58_address,
    }
    if keypair.crypto_type != CRYPTO_SR25519:
        data["crypto"] = keypair.crypto_type
    return data


def keypair_from_keyfile(raw: bytes) -> Keypair:
    """Parse unencrypted keyfile bytes into a Keypair; raises KeyfileError."""
    stripped = raw.lstrip()
    if stripped.startswith(_ENCRYPTED_MARKERS):
        raise KeyfileError("encrypted hotkey files are not supported; use an unencrypted hotkey")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise KeyfileError("hotkey file is not valid JSON") from None
    if not isinstance(data, dict):
        raise KeyfileError("hotkey file is not a JSON object")

    crypto_type = CRYPTO_SR25519
    for field in _CRYPTO_FIELDS:
        value = data.get(field)
        if value is not None:
            # Bittensor SDK 11 writes "cryptoType" as an int: 0 ed25519, 1 sr25519.
            value = _SDK_CRYPTO_TYPES.get(value, value) if isinstance(value, int) else value
            if not isinstance(value, str) or value.lower() not in SUPPORTED_CRYPTO:
                raise KeyfileError(
                    f"hotkey file has unsupported {field}; expected one of {', '.join(SUPPORTED_CRYPTO)}"
                )
            crypto_type = value.lower()
            break

    seed = data.get("secretSeed")
    if seed is None:
        raise KeyfileError("hotkey file has no secretSeed")
    if not isinstance(seed, str):
        raise KeyfileError("hotkey file secretSeed is not a hex string")
    try:
        keypair = Keypair.create_from_seed(seed, crypto_type)
    except ValueError:
        raise KeyfileError("hotkey file secretSeed is not 32 bytes of hex") from None

    address = data.get("ss58Address")
    if address is not None:
        try:
            stored_key = ss58_decode(address)
        except InvalidAddress:
            raise KeyfileError("hotkey file ss58Address is not a valid SS58 address") from None
        if stored_key != keypair.public_key:
            raise KeyfileError("hotkey file ss58Address does not match the key derived from secretSeed")
    return keypair


class Wallet:
    """A Bittensor wallet directory; only the hotkey is used."""

    def __init__(
        self,
        name: str = "default",
        hotkey: str = "default",
        path: str = DEFAULT_WALLET_PATH,
    ) -> None:
        self.name = _check_name(name, "wallet name")
        self.hotkey_str = _check_name(hotkey, "hotkey name")
        self.path = os.path.expanduser(path)
        self.hotkey_file = os.path.join(self.path, self.name, "hotkeys", self.hotkey_str)
        self._hotkey: Keypair | None = None

    @property
    def hotkey(self) -> Keypair:
        """The hotkey, loaded from ``hotkey_file`` on first use; raises KeyfileError."""
        if self._hotkey is None:
            self._hotkey = self._load_hotkey()
        return self._hotkey

    def hotkey_exists(self) -> bool:
        """Whether the hotkey file exists."""
        return os.path.isfile(self.hotkey_file)

    def _load_hotkey(self) -> Keypair:
        try:
            with open(self.hotkey_file, "rb") as handle:
                raw = handle.read(_MAX_KEYFILE_BYTES + 1)
        except FileNotFoundError:
            raise KeyfileError(f"hotkey file not found: {self.hotkey_file}") from None
        except IsADirectoryError:
            raise KeyfileError(f"hotkey file is a directory: {self.hotkey_file}") from None
        except PermissionError:
            raise KeyfileError(f"hotkey file is not readable: {self.hotkey_file}") from None
        except OSError as exc:
            raise KeyfileError(f"cannot read hotkey file {self.hotkey_file}: {exc.strerror}") from None
        if len(raw) > _MAX_KEYFILE_BYTES:
            raise KeyfileError("hotkey file is too large to be a keyfile")
        return keypair_from_keyfile(raw)

    def _write_hotkey(self, keypair: Keypair, overwrite: bool) -> bool:
        """Write atomically; returns False if the file exists and ``overwrite`` is False."""
        directory = os.path.dirname(self.hotkey_file)
        _makedirs_private(directory)
        payload = json.dumps(keyfile_data(keypair)).encode("utf-8")
        fd, tmp_path = tempfile.mkstemp(prefix=f".{self.hotkey_str}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_path, 0o600)
            if overwrite:
                os.replace(tmp_path, self.hotkey_file)
            else:
                try:
                    # link() never replaces an existing file, so a concurrent creator wins cleanly.
                    os.link(tmp_path, self.hotkey_file)
                except FileExistsError:
                    return False
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                        raise
                    if os.path.lexists(self.hotkey_file):
                        return False
                    os.replace(tmp_path, self.hotkey_file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
        _fsync_dir(directory)
        return True

    def create_new_hotkey(self, overwrite: bool = False, crypto_type: str = CRYPTO_SR25519) -> Wallet:
        """Generate and write a new hotkey; refuses to replace one unless ``overwrite``."""
        keypair = Keypair.generate(crypto_type)
        if not overwrite and os.path.lexists(self.hotkey_file):
            raise KeyfileError("hotkey file already exists; pass overwrite=True to replace it")
        if not self._write_hotkey(keypair, overwrite):
            raise KeyfileError("hotkey file already exists; pass overwrite=True to replace it")
        self._hotkey = keypair
        return self

    def create_if_missing(self, crypto_type: str = CRYPTO_SR25519) -> Wallet:
        """Create a hotkey file only if none exists (an existing one is never touched)."""
        if os.path.lexists(self.hotkey_file):
            return self
        keypair = Keypair.generate(crypto_type)
        if self._write_hotkey(keypair, overwrite=False):
            self._hotkey = keypair
        return self

    def __repr__(self) -> str:
        return f"Wallet(name={self.name!r}, hotkey={self.hotkey_str!r}, path={self.path!r})"


__all__ = ["DEFAULT_WALLET_PATH", "Wallet", "keyfile_data", "keypair_from_keyfile"]


class KeypairWallet:
    """A wallet made from a keypair in memory (no files): tests, ephemeral clients."""

    def __init__(self, hotkey: Keypair) -> None:
        self.hotkey = hotkey

    @classmethod
    def generate(cls, crypto_type: str = "sr25519") -> KeypairWallet:
        """A wallet with a fresh random hotkey."""
        return cls(Keypair.generate(crypto_type))

    def __repr__(self) -> str:
        return f"KeypairWallet({self.hotkey.ss58_address})"


def default_wallet(config: Mapping[str, Any] | None = None) -> Wallet:
    """The configured wallet, else Bittensor's default one, else a development hotkey.

    The development hotkey lives under :func:`data_dir` and is created only when
    missing; an existing key file is never overwritten.
    """
    section: Any = (config.get("wallet") if config is not None else None) or {}
    path = section.get("path") or "~/.bittensor/wallets"
    if section.get("name"):
        return Wallet(name=section["name"], hotkey=section.get("hotkey") or "default", path=path)
    bittensor_default = Wallet(name="default", hotkey="default", path=path)
    if bittensor_default.hotkey_exists():
        return bittensor_default
    dev = Wallet(name="dev", hotkey="default", path=str(data_dir() / "wallets"))
    if not dev.hotkey_exists():
        logger.info("creating a development hotkey at %s", dev.hotkey_file)
    return dev.create_if_missing()
