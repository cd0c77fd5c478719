"""Tests for axon_grpc.auth.wallet: Bittensor-layout hotkey files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from axon_grpc.auth.keys import Keypair
from axon_grpc.auth.wallet import Wallet, keyfile_data
from axon_grpc.errors import KeyfileError

SEED_HEX = "0x" + bytes(range(32)).hex()


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _bittensor_file(keypair: Keypair, **overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "accountId": "0x" + keypair.public_key.hex(),
        "publicKey": "0x" + keypair.public_key.hex(),
        "privateKey": "0x" + keypair.private_key.hex(),
        "secretPhrase": None,
        "secretSeed": keypair.seed_hex,
        "ss58Address": keypair.ss58_address,
    }
    data.update(overrides)
    return json.dumps(data).encode()


def test_layout_and_attributes(tmp_path: Path) -> None:
    wallet = Wallet("miner", "hk1", str(tmp_path))
    assert wallet.name == "miner"
    assert wallet.hotkey_str == "hk1"
    assert wallet.path == str(tmp_path)
    assert wallet.hotkey_file == os.path.join(str(tmp_path), "miner", "hotkeys", "hk1")
    assert wallet.hotkey_exists() is False


def test_default_path_is_expanded() -> None:
    wallet = Wallet()
    assert wallet.path == os.path.expanduser("~/.bittensor/wallets")
    assert wallet.hotkey_file.endswith(os.path.join("default", "hotkeys", "default"))


def test_create_if_missing_writes_loadable_file(tmp_path: Path) -> None:
    wallet = Wallet("w", "h", str(tmp_path)).create_if_missing()
    assert wallet.hotkey_exists()
    created = wallet.hotkey
    data = json.loads(Path(wallet.hotkey_file).read_text())
    assert set(data) == {"accountId", "publicKey", "privateKey", "secretPhrase", "secretSeed", "ss58Address"}
    assert data["secretPhrase"] is None
    assert data["ss58Address"] == created.ss58_address
    assert data["publicKey"] == data["accountId"] == "0x" + created.public_key.hex()
    assert len(bytes.fromhex(data["secretSeed"][2:])) == 32
    assert len(bytes.fromhex(data["privateKey"][2:])) == 64

    reloaded = Wallet("w", "h", str(tmp_path)).hotkey
    assert reloaded.ss58_address == created.ss58_address
    assert reloaded.crypto_type == "sr25519"
    assert reloaded.verify("m", created.sign("m"))
    assert created.verify("m", reloaded.sign("m"))


def test_created_file_and_directory_modes(tmp_path: Path) -> None:
    wallet = Wallet("w", "h", str(tmp_path / "wallets")).create_if_missing()
    assert stat.S_IMODE(os.stat(wallet.hotkey_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(wallet.hotkey_file)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "wallets" / "w").st_mode) == 0o700
    # Only the hotkey file is left behind (no temp files).
    assert os.listdir(os.path.dirname(wallet.hotkey_file)) == ["h"]


def test_second_create_if_missing_does_not_change_file(tmp_path: Path) -> None:
    first = Wallet("w", "h", str(tmp_path)).create_if_missing()
    before = Path(first.hotkey_file).read_bytes()
    mtime = os.stat(first.hotkey_file).st_mtime_ns
    second = Wallet("w", "h", str(tmp_path)).create_if_missing()
    assert Path(second.hotkey_file).read_bytes() == before
    assert os.stat(second.hotkey_file).st_mtime_ns == mtime
    assert second.hotkey.ss58_address == first.hotkey.ss58_address
    # Same object again: still untouched.
    first.create_if_missing("ed25519")
    assert Path(first.hotkey_file).read_bytes() == before


def test_ed25519_round_trip(tmp_path: Path) -> None:
    wallet = Wallet("w", "ed", str(tmp_path)).create_if_missing("ed25519")
    created = wallet.hotkey
    assert created.crypto_type == "ed25519"
    data = json.loads(Path(wallet.hotkey_file).read_text())
    assert data["crypto"] == "ed25519"
    assert data["ss58Address"] == created.ss58_address
    reloaded = Wallet("w", "ed", str(tmp_path)).hotkey
    assert reloaded.crypto_type == "ed25519"
    assert reloaded.ss58_address == created.ss58_address
    assert reloaded.sign("m") == created.sign("m")  # ed25519 is deterministic


def test_loads_bittensor_style_file(tmp_path: Path) -> None:
    keypair = Keypair.create_from_seed(SEED_HEX)
    wallet = Wallet("w", "h", str(tmp_path))
    _write(Path(wallet.hotkey_file), _bittensor_file(keypair))
    assert wallet.hotkey.ss58_address == keypair.ss58_address
    assert wallet.hotkey is wallet.hotkey  # cached
    assert keyfile_data(keypair) == json.loads(_bittensor_file(keypair))


def test_hotkey_is_lazy(tmp_path: Path) -> None:
    wallet = Wallet("w", "h", str(tmp_path))  # no file: constructing must not fail
    assert "w" in repr(wallet)
    with pytest.raises(KeyfileError, match="not found"):
        _ = wallet.hotkey


def test_create_new_hotkey_refuses_overwrite(tmp_path: Path) -> None:
    wallet = Wallet("w", "h", str(tmp_path)).create_new_hotkey()
    before = Path(wallet.hotkey_file).read_bytes()
    with pytest.raises(KeyfileError, match="already exists"):
        wallet.create_new_hotkey()
    assert Path(wallet.hotkey_file).read_bytes() == before
    old = wallet.hotkey.ss58_address
    wallet.create_new_hotkey(overwrite=True)
    assert Path(wallet.hotkey_file).read_bytes() != before
    assert wallet.hotkey.ss58_address != old
    assert Wallet("w", "h", str(tmp_path)).hotkey.ss58_address == wallet.hotkey.ss58_address


def test_repr_has_no_secrets(tmp_path: Path) -> None:
    wallet = Wallet("w", "h", str(tmp_path)).create_if_missing()
    text = repr(wallet)
    data = json.loads(Path(wallet.hotkey_file).read_text())
    assert "'w'" in text and "'h'" in text
    for secret in (data["secretSeed"], data["privateKey"]):
        assert secret[2:18] not in text


@pytest.mark.parametrize("bad", ["", "..", "a/b", "../x"])
def test_rejects_path_like_names(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="name"):
        Wallet(bad, "h", str(tmp_path))
    with pytest.raises(ValueError, match="name"):
        Wallet("w", bad, str(tmp_path))


# ------------------------------------------------------------------ KeyfileError


def _wallet_with(tmp_path: Path, content: bytes) -> Wallet:
    wallet = Wallet("w", "h", str(tmp_path))
    _write(Path(wallet.hotkey_file), content)
    return wallet


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyfileError, match="hotkey file not found"):
        _ = Wallet("w", "h", str(tmp_path)).hotkey


def test_directory_instead_of_file(tmp_path: Path) -> None:
    wallet = Wallet("w", "h", str(tmp_path))
    os.makedirs(wallet.hotkey_file)
    with pytest.raises(KeyfileError, match="directory"):
        _ = wallet.hotkey


@pytest.mark.parametrize("content", [b"", b"not json", b"{", b"\xff\xfe\x00"])
def test_not_json(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(KeyfileError, match="not valid JSON"):
        _ = _wallet_with(tmp_path, content).hotkey


@pytest.mark.parametrize("content", [b"[]", b'"0xabc"', b"42", b"null"])
def test_not_an_object(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(KeyfileError, match="not a JSON object"):
        _ = _wallet_with(tmp_path, content).hotkey


@pytest.mark.parametrize(
    "content",
    [
        b"$NACL" + os.urandom(64),
        b"$BTWALLET" + os.urandom(64),
        b"$ANSIBLE_VAULT;1.1;AES256\n3132",
        b"gAAAAABk" + b"A" * 40,
    ],
)
def test_encrypted(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(KeyfileError, match="encrypted hotkey files are not supported; use an unencrypted hotkey"):
        _ = _wallet_with(tmp_path, content).hotkey


@pytest.mark.parametrize("seed", ["absent", None])
def test_lacks_secret_seed(tmp_path: Path, seed: str | None) -> None:
    keypair = Keypair.create_from_seed(SEED_HEX)
    data = json.loads(_bittensor_file(keypair))
    if seed == "absent":
        del data["secretSeed"]
    else:
        data["secretSeed"] = None
    with pytest.raises(KeyfileError, match="no secretSeed"):
        _ = _wallet_with(tmp_path, json.dumps(data).encode()).hotkey


@pytest.mark.parametrize("seed", ["0x1234", "0xzz" + "00" * 31, 12345])
def test_bad_secret_seed(tmp_path: Path, seed: object) -> None:
    keypair = Keypair.create_from_seed(SEED_HEX)
    with pytest.raises(KeyfileError, match="secretSeed"):
        _ = _wallet_with(tmp_path, _bittensor_file(keypair, secretSeed=seed)).hotkey


def test_ss58_mismatch(tmp_path: Path) -> None:
    keypair = Keypair.create_from_seed(SEED_HEX)
    other = Keypair.generate()
    content = _bittensor_file(keypair, ss58Address=other.ss58_address)
    with pytest.raises(KeyfileError, match="ss58Address does not match"):
        _ = _wallet_with(tmp_path, content).hotkey


def test_ss58_address_invalid(tmp_path: Path) -> None:
    keypair = Keypair.create_from_seed(SEED_HEX)
    content = _bittensor_file(keypair, ss58Address="5notanaddress")
    with pytest.raises(KeyfileError, match="ss58Address is not a valid"):
        _ = _wallet_with(tmp_path, content).hotkey


def test_ed25519_file_read_as_sr25519_mismatches(tmp_path: Path) -> None:
    ed = Keypair.create_from_seed(SEED_HEX, "ed25519")
    content = json.loads(_bittensor_file(ed))  # no "crypto" marker
    with pytest.raises(KeyfileError, match="does not match"):
        _ = _wallet_with(tmp_path, json.dumps(content).encode()).hotkey


def test_unsupported_crypto_field(tmp_path: Path) -> None:
    keypair = Keypair.create_from_seed(SEED_HEX)
    with pytest.raises(KeyfileError, match="unsupported crypto"):
        _ = _wallet_with(tmp_path, _bittensor_file(keypair, crypto="ecdsa")).hotkey


def test_crypto_type_field_also_accepted(tmp_path: Path) -> None:
    ed = Keypair.create_from_seed(SEED_HEX, "ed25519")
    wallet = _wallet_with(tmp_path, _bittensor_file(ed, cryptoType="ed25519"))
    assert wallet.hotkey.crypto_type == "ed25519"
    assert wallet.hotkey.ss58_address == ed.ss58_address


def test_create_if_missing_loses_race_without_overwriting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wallet = Wallet("w", "h", str(tmp_path)).create_if_missing()
    before = Path(wallet.hotkey_file).read_bytes()
    # Simulate another process creating the file after the existence check.
    monkeypatch.setattr(os.path, "lexists", lambda _path: False)
    racer = Wallet("w", "h", str(tmp_path)).create_if_missing()
    monkeypatch.undo()
    assert Path(wallet.hotkey_file).read_bytes() == before
    assert racer.hotkey.ss58_address == wallet.hotkey.ss58_address
    assert os.listdir(os.path.dirname(wallet.hotkey_file)) == ["h"]
    with pytest.raises(KeyfileError, match="already exists"):
        monkeypatch.setattr(os.path, "lexists", lambda _path: False)
        racer.create_new_hotkey()
    monkeypatch.undo()
    assert Path(wallet.hotkey_file).read_bytes() == before
