"""btauth/1 (Bittensor SDK 11's http_auth) over gRPC, signed and checked with the real SDK."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

bt = pytest.importorskip("bittensor", reason="the btauth tests need the bittensor==11.3.0 test extra")
http_auth = bt.http_auth

from axon_grpc import Dendrite, KeypairWallet  # noqa: E402
from axon_grpc.schema import schema_for  # noqa: E402
from axon_grpc.testing import AxonHarness, serve_axon  # noqa: E402

from .support import Dummy, RawCaller, dummy_forward  # noqa: E402

PATH = "/axon.v1.Axon/Dummy"
BODY = schema_for(Dummy).to_bytes({"input": 7})


def sdk_wallet(tmp_path: Path, name: str, crypto_type: int = 1):
    wallet = bt.Wallet(name=name, hotkey="h", path=str(tmp_path))
    wallet.create_new_hotkey(suppress=True, crypto_type=crypto_type)
    return wallet


def as_metadata(headers: dict[str, str]) -> list[tuple[str, str]]:
    return [(key.lower(), value) for key, value in headers.items()]


def sdk_reason(headers: dict[str, str], body: bytes, receiver: str) -> str:
    """What the SDK's own verifier says about a request (fresh replay store)."""
    with pytest.raises(http_auth.AuthError) as refused:
        http_auth.verify(
            headers,
            body,
            method="POST",
            path=PATH,
            self_hotkey_ss58=receiver,
            nonce_store=http_auth.InMemoryNonceStore(),
        )
    return str(refused.value)


@pytest.fixture
async def harness():
    seen: list[tuple[str, int]] = []

    def blacklist(synapse: Dummy) -> tuple[bool, str]:
        seen.append((synapse.dendrite.hotkey, synapse.dendrite.nonce))
        return False, ""

    async with serve_axon({"forward_fn": dummy_forward, "blacklist_fn": blacklist}) as h:
        h.seen = seen  # type: ignore[attr-defined]
        yield h


@pytest.fixture
async def raw(harness: AxonHarness):
    caller = RawCaller(f"127.0.0.1:{harness.axon.port}", harness.axon.wallet.hotkey.ss58_address)
    yield caller
    await caller.close()


@pytest.mark.parametrize("crypto_type", [1, 0], ids=["sr25519", "ed25519"])
async def test_sdk_signed_grpc_call_is_served_and_hooks_see_the_caller(
    harness: AxonHarness, raw: RawCaller, tmp_path: Path, crypto_type: int
) -> None:
    wallet = sdk_wallet(tmp_path, "validator", crypto_type)
    axon_hotkey = harness.axon.wallet.hotkey.ss58_address
    headers = http_auth.sign(wallet, method="POST", path=PATH, body=BODY, receiver_ss58=axon_hotkey)
    status, response, details, trailing = await raw.call("Dummy", BODY, as_metadata(headers))
    assert status == grpc.StatusCode.OK, details
    assert schema_for(Dummy).from_bytes(response) == {"input": 7, "output": 14}
    assert trailing["bt_header_axon_status_code"] == "200"
    assert harness.seen == [(wallet.hotkey.ss58_address, int(headers["X-Bittensor-Nonce"]))]

    replay = await raw.call("Dummy", BODY, as_metadata(headers))
    assert replay[0] == grpc.StatusCode.UNAUTHENTICATED
    assert replay[2] == "Not Verified with error: this nonce was already accepted from this hotkey (rule R21)"


def _cases(wallet, receiver: str, other: str) -> list[tuple[str, dict[str, str], bytes]]:
    now = time.time_ns()
    good = http_auth.sign(wallet, method="POST", path=PATH, body=BODY, receiver_ss58=receiver)
    cases = [
        (
            "stale",
            http_auth.sign(
                wallet, method="POST", path=PATH, body=BODY, receiver_ss58=receiver, nonce_ns=now - 11 * 10**9
            ),
            BODY,
        ),
        (
            "future",
            http_auth.sign(
                wallet, method="POST", path=PATH, body=BODY, receiver_ss58=receiver, nonce_ns=now + 5 * 10**9
            ),
            BODY,
        ),
        ("wrong receiver", http_auth.sign(wallet, method="POST", path=PATH, body=BODY, receiver_ss58=other), BODY),
        ("no receiver", http_auth.sign(wallet, method="POST", path=PATH, body=BODY), BODY),
        ("body changed", good, schema_for(Dummy).to_bytes({"input": 8})),
        (
            "other path",
            http_auth.sign(wallet, method="POST", path="/axon.v1.Axon/Synapse", body=BODY, receiver_ss58=receiver),
            BODY,
        ),
    ]
    for label, change in [
        ("missing hotkey", {"X-Bittensor-Hotkey": None}),
        ("missing nonce", {"X-Bittensor-Nonce": None}),
        ("missing signature", {"X-Bittensor-Signature": None}),
        ("bad hex", {"X-Bittensor-Signature": "0xnothex"}),
        ("short signature", {"X-Bittensor-Signature": "0x" + "ab" * 10}),
        ("unknown crypto", {"X-Bittensor-Crypto": "rsa"}),
        ("bad version", {"X-Bittensor-Version": "2"}),
        ("bad nonce", {"X-Bittensor-Nonce": "soon"}),
        ("bad address", {"X-Bittensor-Hotkey": "5CcfgLpA3ZfFZpHVsMjmhxuake347N5RciPndJ7RW48hQxV2"}),
    ]:
        headers = {k: v for k, v in {**good, **change}.items() if v is not None}
        cases.append((label, headers, BODY))
    return cases


async def test_every_refusal_is_401_in_the_sdks_own_words(harness: AxonHarness, raw: RawCaller, tmp_path: Path) -> None:
    wallet = sdk_wallet(tmp_path, "validator")
    receiver = harness.axon.wallet.hotkey.ss58_address
    for label, headers, body in _cases(wallet, receiver, KeypairWallet.generate().hotkey.ss58_address):
        status, _, details, trailing = await raw.call("Dummy", body, as_metadata(headers))
        assert status == grpc.StatusCode.UNAUTHENTICATED, label
        assert details == f"Not Verified with error: {sdk_reason(headers, body, receiver)} (rule R21)", label
        assert trailing["bt_header_axon_status_code"] == "401", label
    ok = await harness.call(Dummy(input=1))
    assert ok.dendrite.status_code == 200


async def test_btauth_dendrite_is_served_and_passes_the_sdk_verifier(harness: AxonHarness) -> None:
    dendrite = Dendrite(KeypairWallet.generate(), auth="btauth")
    result = await dendrite.call(harness.info, Dummy(input=4), deserialize=False)
    await dendrite.aclose()
    assert result.dendrite.status_code == 200 and result.output == 8
    assert harness.seen[-1][0] == dendrite.keypair.ss58_address

    for crypto in ("sr25519", "ed25519"):
        signer = Dendrite(KeypairWallet.generate(crypto), auth="btauth")
        body, metadata = signer.signer.grpc(harness.info, Dummy(input=7), 12.0, schema_for(Dummy))
        caller = http_auth.verify(
            dict(metadata),
            body,
            method="POST",
            path=PATH,
            self_hotkey_ss58=harness.info.hotkey,
            nonce_store=http_auth.InMemoryNonceStore(),
        )
        assert caller.hotkey_ss58 == signer.keypair.ss58_address
        assert http_auth.CRYPTO_TYPE_NAMES[caller.crypto_type] == crypto


def test_unknown_auth_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="auth must be one of legacy, btauth"):
        Dendrite(auth="basic")


@pytest.mark.parametrize("crypto_type, name", [(1, "sr25519"), (0, "ed25519")])
def test_our_wallet_reads_an_sdk_11_hotkey(tmp_path: Path, crypto_type: int, name: str) -> None:
    from axon_grpc import Wallet

    theirs = sdk_wallet(tmp_path, "miner", crypto_type)
    ours = Wallet(name="miner", hotkey="h", path=str(tmp_path))
    assert ours.hotkey.ss58_address == theirs.hotkey.ss58_address
    assert ours.hotkey.crypto_type == name
    assert theirs.hotkey.verify(b"hello", ours.hotkey.sign(b"hello"))


# -- the same over the HTTP bridge --------------------------------------------------------------
async def test_sdk_signed_http_call_answers_user_fields(tmp_path: Path) -> None:
    import json

    from .test_bridge_client import serve_bridge

    wallet = sdk_wallet(tmp_path, "validator")
    async with serve_bridge() as b:
        receiver = b.axon.wallet.hotkey.ss58_address
        body = json.dumps({"input": 7}).encode()
        for path in ("/Dummy", "/Dummy?trace=1"):
            headers = http_auth.sign(wallet, method="POST", path=path, body=body, receiver_ss58=receiver)
            response = await b.client.send(path, headers, body)
            assert response.status == 200, response.text
            assert response.json == {"input": 7, "output": 14}
            assert response.headers["bt_header_axon_status_code"] == "200"
            assert response.headers["bt_header_axon_hotkey"] == receiver
            replay = await b.client.send(path, headers, body)
            assert replay.status == 401
            assert replay.message == "Not Verified with error: this nonce was already accepted from this hotkey"

        now = time.time_ns()
        good = http_auth.sign(wallet, method="POST", path="/Dummy", body=body, receiver_ss58=receiver)
        cases = {
            "stale": (
                http_auth.sign(
                    wallet, method="POST", path="/Dummy", body=body, receiver_ss58=receiver, nonce_ns=now - 11 * 10**9
                ),
                body,
            ),
            "wrong receiver": (
                http_auth.sign(
                    wallet,
                    method="POST",
                    path="/Dummy",
                    body=body,
                    receiver_ss58=KeypairWallet.generate().hotkey.ss58_address,
                ),
                body,
            ),
            "body changed": (good, json.dumps({"input": 8}).encode()),
            "bad hex": ({**good, "X-Bittensor-Signature": "0xzz"}, body),
            "unknown crypto": ({**good, "X-Bittensor-Crypto": "rsa"}, body),
        }
        for label, (headers, sent) in cases.items():
            response = await b.client.send("/Dummy", headers, sent)
            expected = "Not Verified with error: " + _sdk_http_reason(headers, sent, receiver)
            assert (response.status, response.message) == (401, expected), label
        await b.assert_still_serving()


def _sdk_http_reason(headers: dict[str, str], body: bytes, receiver: str) -> str:
    with pytest.raises(http_auth.AuthError) as refused:
        http_auth.verify(
            headers,
            body,
            method="POST",
            path="/Dummy",
            self_hotkey_ss58=receiver,
            nonce_store=http_auth.InMemoryNonceStore(),
        )
    return str(refused.value)
