"""Property-based fuzzing of both transports (hypothesis).

Malformed metadata and headers, SS58 strings, signatures, nonces, uuids, JSON and
protobuf bodies, some of them correctly signed so that they reach the body parser. Every
answer must be a client status (gRPC: never INTERNAL or UNKNOWN, UNAVAILABLE only as the
axon's own 503; HTTP: below 500, with a whole response), the server keeps serving, and
nothing is logged at warning level or with a traceback.

The default run is a few hundred examples; ``AXON_FUZZ_EXAMPLES=5000 pytest
tests/test_fuzz.py`` (examples per test) is the longer run.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import string
import time
import uuid
from typing import Any, Iterator, Optional

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon_grpc import Axon, Dendrite, Keypair, Synapse
from axon_grpc.auth import btauth
from axon_grpc.auth.legacy import PROTOCOL_VERSION, grpc_body_hash
from axon_grpc.testing import build_axon

from .support import Dummy, dummy_forward

EXAMPLES = int(os.environ.get("AXON_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: What a client fault may be answered with over gRPC (UNAVAILABLE only with the axon's 503).
CLIENT_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
}


class Fuzzed(Synapse):
    """Fields of most mapped kinds, so bodies reach every decoder."""

    text: str = ""
    count: int = 0
    ratio: float = 0.0
    flag: bool = False
    blob: bytes = b""
    items: list[int] = []
    tags: dict[str, str] = {}
    maybe: Optional[str] = None

    required_hash_fields = ("text", "count")


def fuzzed_forward(synapse: Fuzzed) -> Fuzzed:
    return synapse


class Loud(logging.Handler):
    """Collects what the servers log at warning level or with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Axon, Loud]]:
    loud = Loud()
    root = logging.getLogger()
    root.addHandler(loud)
    level = root.level
    root.setLevel(logging.DEBUG)
    axon = build_axon(dummy_forward, fuzzed_forward, http_port=0).start()
    try:
        yield axon, loud
    finally:
        axon.stop(grace=None)
        root.removeHandler(loud)
        root.setLevel(level)


@pytest.fixture
def check(served: tuple[Axon, Loud]) -> Iterator[tuple[Axon, Any]]:
    """The axon and a gRPC channel; afterwards: still serving, nothing logged loudly."""
    axon, loud = served
    loud.records.clear()
    channel = grpc.insecure_channel(f"127.0.0.1:{axon.port}")
    try:
        yield axon, channel
    finally:
        channel.close()
    assert [f"{r.name}: {r.getMessage()[:200]}" for r in loud.records] == []
    result = Dendrite().query(axon.info(), Dummy(input=4), timeout=5.0, deserialize=False)
    assert result.output == 8, result.dendrite.status_message


# -- strategies ----------------------------------------------------------------------------------

PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
SS58ISH = st.one_of(st.text(st.sampled_from(B58), max_size=60), PRINTABLE)
HEXISH = st.one_of(
    st.binary(max_size=70).map(lambda b: "0x" + b.hex()),
    st.text(st.sampled_from(string.hexdigits + "xX"), max_size=140),
    PRINTABLE,
)
NUMBERISH = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.just("-1" + "0" * 400),
    st.just("9" * 5000),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    PRINTABLE,
)
UUIDISH = st.one_of(st.uuids().map(str), PRINTABLE, st.text(st.sampled_from("ab-"), min_size=60, max_size=200))
LEGACY_KEYS = {
    "bt_header_dendrite_hotkey": SS58ISH,
    "bt_header_dendrite_nonce": NUMBERISH,
    "bt_header_dendrite_uuid": UUIDISH,
    "bt_header_dendrite_signature": HEXISH,
    "bt_header_dendrite_version": NUMBERISH,
    "bt_header_dendrite_crypto": st.sampled_from(["sr25519", "ed25519", "x", ""]),
    "computed_body_hash": HEXISH,
    "timeout": NUMBERISH,
    "name": st.sampled_from(["Fuzzed", "Dummy", "", "x" * 300]),
    "bt_header_input_obj_text": PRINTABLE,
    "bt_header_axon_ip": PRINTABLE,
    btauth.HEADER_VERSION: st.sampled_from(["1", "2", ""]),
    btauth.HEADER_HOTKEY: SS58ISH,
    btauth.HEADER_NONCE: NUMBERISH,
    btauth.HEADER_SIGNATURE: HEXISH,
    btauth.HEADER_RECEIVER: SS58ISH,
}
HEADERS = st.dictionaries(
    st.one_of(
        st.sampled_from(sorted(LEGACY_KEYS)),
        st.text(st.sampled_from(string.ascii_lowercase + "_-"), min_size=1, max_size=20),
    ),
    PRINTABLE,
    max_size=12,
).flatmap(
    lambda base: st.fixed_dictionaries({}, optional={k: LEGACY_KEYS[k] for k in LEGACY_KEYS}).map(
        lambda chosen: {**base, **chosen}
    )
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
JSON_BODIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "text": JSON_VALUES,
            "count": JSON_VALUES,
            "ratio": JSON_VALUES,
            "flag": JSON_VALUES,
            "blob": JSON_VALUES,
            "items": JSON_VALUES,
            "tags": JSON_VALUES,
            "maybe": JSON_VALUES,
            "dendrite": JSON_VALUES,
            "axon": JSON_VALUES,
            "timeout": JSON_VALUES,
            "name": JSON_VALUES,
        },
    ).map(lambda d: json.dumps(d).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"[" * 5000, b'{"text": "\\ud800"}', b'{"count": ' + b"9" * 5000 + b"}", b'{"count": 1e999}']),
)


def _grpc_ok(code: grpc.StatusCode, trailing: dict[str, str]) -> None:
    assert code in CLIENT_CODES, code
    if code is grpc.StatusCode.UNAVAILABLE:  # only the axon's own refusal, never a dropped call
        assert trailing.get("bt_header_axon_status_code") == "503", trailing


def _grpc_call(channel: Any, method: str, body: bytes, metadata: list[tuple[str, str]]) -> None:
    rpc = channel.unary_unary(f"/axon.v1.Axon/{method}")
    try:
        _, call = rpc.with_call(body, metadata=metadata, timeout=10)
        code, trailing = grpc.StatusCode.OK, dict(call.trailing_metadata() or ())
    except grpc.RpcError as e:
        code, trailing = e.code(), dict(e.trailing_metadata() or ())
    _grpc_ok(code, trailing)


def _signed_grpc(axon: Axon, method: str, body: bytes) -> dict[str, str]:
    key = Keypair.generate() if not hasattr(_signed_grpc, "key") else _signed_grpc.key  # type: ignore[attr-defined]
    _signed_grpc.key = key  # type: ignore[attr-defined]
    nonce, uid = time.time_ns(), str(uuid.uuid4())
    body_hash = grpc_body_hash(f"/axon.v1.Axon/{method}", body)
    message = f"{nonce}.{key.ss58_address}.{axon.wallet.hotkey.ss58_address}.{uid}.{body_hash}"
    return {
        "bt_header_dendrite_hotkey": key.ss58_address,
        "bt_header_dendrite_nonce": str(nonce),
        "bt_header_dendrite_uuid": uid,
        "bt_header_dendrite_version": str(PROTOCOL_VERSION),
        "bt_header_dendrite_signature": key.sign_hex(message),
        "computed_body_hash": body_hash,
        "timeout": "5",
    }


def _http(axon: Axon, path: str, headers: dict[str, str], body: bytes) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", int(axon.http_port or 0), timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()  # raises if the connection was dropped
        payload = response.read()
        assert response.status < 500 or (response.status == 503 and b"overloaded" in payload), (
            response.status,
            payload[:200],
        )
    finally:
        connection.close()


def _header_safe(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k and "\r" not in v and "\n" not in v and v == v.strip()}


# -- the properties ------------------------------------------------------------------------------


@FUZZ
@given(headers=HEADERS, body=st.binary(max_size=64), method=st.sampled_from(["Fuzzed", "Dummy", "Nope", "Fuzzed/x"]))
def test_grpc_unsigned_metadata(check, headers: dict[str, str], body: bytes, method: str) -> None:
    _, channel = check
    _grpc_call(channel, method, body, [(k, v) for k, v in headers.items() if v == v.strip()])


@FUZZ
@given(
    body=st.binary(max_size=300),
    mutate=st.one_of(
        st.none(), st.sampled_from(sorted(LEGACY_KEYS)).flatmap(lambda k: st.tuples(st.just(k), LEGACY_KEYS[k]))
    ),
)
def test_grpc_signed_protobuf_bodies(check, body: bytes, mutate: tuple[str, str] | None) -> None:
    axon, channel = check
    metadata = _signed_grpc(axon, "Fuzzed", body)
    if mutate is not None and mutate[1] == mutate[1].strip():
        metadata[mutate[0]] = mutate[1]
    _grpc_call(channel, "Fuzzed", body, list(metadata.items()))


@FUZZ
@given(headers=HEADERS, body=JSON_BODIES, path=st.sampled_from(["/Fuzzed", "/Dummy", "/Nope", "/Fuzzed?x=1", "/"]))
def test_http_unsigned_headers_and_bodies(check, headers: dict[str, str], body: bytes, path: str) -> None:
    axon, _ = check
    _http(axon, path, _header_safe(headers), body)


@FUZZ
@given(body=JSON_BODIES)
def test_http_signed_json_bodies(check, body: bytes) -> None:
    axon, _ = check
    key = Keypair.generate()
    headers = btauth.sign_headers(
        key, method="POST", path="/Fuzzed", body=body, receiver=axon.wallet.hotkey.ss58_address
    )
    _http(axon, "/Fuzzed", {**headers, "content-type": "application/json"}, body)


@FUZZ
@given(hotkey=SS58ISH, signature=HEXISH, nonce=NUMBERISH, uid=UUIDISH)
def test_both_transports_with_fuzzed_credentials(check, hotkey: str, signature: str, nonce: str, uid: str) -> None:
    axon, channel = check
    body = b"\x08\x03"
    fields = {
        "bt_header_dendrite_hotkey": hotkey,
        "bt_header_dendrite_signature": signature,
        "bt_header_dendrite_nonce": nonce,
        "bt_header_dendrite_uuid": uid,
        "computed_body_hash": grpc_body_hash("/axon.v1.Axon/Dummy", body),
    }
    fields = {k: v for k, v in fields.items() if v == v.strip()}
    _grpc_call(channel, "Dummy", body, list(fields.items()))
    _http(axon, "/Dummy", _header_safe(fields), b'{"input": 3}')
