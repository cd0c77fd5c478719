"""The demo: an axon on the embedded defaults, called once by a Dendrite over gRPC and
once the way a legacy (SDK 7.2-10.5) dendrite calls it, over the HTTP bridge."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Optional

from axon_grpc.auth.keys import Keypair
from axon_grpc.auth.legacy import PROTOCOL_VERSION
from axon_grpc.client.dendrite import Dendrite
from axon_grpc.server.axon import Axon
from axon_grpc.server.config import Config
from axon_grpc.synapse import Synapse, TerminalInfo

#: The demo's HTTP bridge port when ``--axon.http_port`` is not given.
DEMO_HTTP_PORT = 8092

logger = logging.getLogger("axon_grpc")


class Dummy(Synapse):
    """The example synapse: the request carries ``input``, the miner fills ``output``."""

    input: int
    output: Optional[int] = None

    required_hash_fields = ("input",)

    def deserialize(self) -> Optional[int]:
        return self.output


def forward(synapse: Dummy) -> Dummy:
    synapse.output = synapse.input * 2
    return synapse


def blacklist(synapse: Dummy) -> tuple[bool, str]:
    return synapse.input == 13, "input 13 is blacklisted"


def priority(synapse: Dummy) -> float:
    return 1.0


def legacy_http_call(
    host: str, port: int, axon_hotkey: str, synapse: Synapse, keypair: Keypair, timeout: float = 12.0
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST ``synapse`` as a legacy dendrite does: ``bt_header_*`` headers, JSON body.

    Returns the status, the JSON body and the response headers.
    """
    nonce = time.time_ns()
    dendrite_uuid = str(uuid.uuid1())
    synapse.timeout = timeout
    synapse.dendrite = TerminalInfo(
        ip="127.0.0.1", version=PROTOCOL_VERSION, nonce=nonce, uuid=dendrite_uuid, hotkey=keypair.ss58_address
    )
    synapse.axon = TerminalInfo(ip=host, port=port, hotkey=axon_hotkey)
    message = f"{nonce}.{keypair.ss58_address}.{axon_hotkey}.{dendrite_uuid}.{synapse.body_hash}"
    synapse.dendrite.signature = keypair.sign_hex(message)
    headers = {**synapse.to_headers(), "Content-Type": "application/json"}
    url_host = f"[{host}]" if ":" in host else host
    request = urllib.request.Request(
        f"http://{url_host}:{port}/{type(synapse).__name__}",
        data=json.dumps(synapse.model_dump()).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"{}"), dict(e.headers)


def run_demo(config: Config, value: int = 21, out: Any = print) -> int:
    """Start an axon, call it once over gRPC and once over the HTTP bridge; 0 on success."""
    section = config.setdefault("axon", Config())
    if not section.get("http_port"):
        section["http_port"] = DEMO_HTTP_PORT
    axon = Axon(config=config)
    axon.attach(forward_fn=forward, blacklist_fn=blacklist, priority_fn=priority)
    axon.start()
    try:
        # Call the bound address (the advertised external ip may not be reachable here).
        host = axon.ip.strip("[]")
        host = "127.0.0.1" if host in ("", "::", "0.0.0.0") else host
        out(
            f"axon   {axon.wallet.hotkey.ss58_address} serving {list(axon.endpoints)} "
            f"on grpc {axon.full_address} and http {axon.ip}:{axon.http_port}"
        )
        info = axon.info()
        info.ip = host
        info.ip_type = 6 if ":" in info.ip else 4
        dendrite = Dendrite()
        result = dendrite.query(info, Dummy(input=value), timeout=12.0, deserialize=False)
        dendrite.close_session()
        d = result.dendrite
        out(
            f"grpc   Dummy(input={value}) -> output={result.output} "
            f"status={d.status_code} {d.status_message!r} in {d.process_time * 1e3:.1f} ms"
        )
        grpc_ok = result.is_success and result.output == value * 2

        start = time.perf_counter()
        status, body, headers = legacy_http_call(
            host, int(axon.http_port or 0), axon.wallet.hotkey.ss58_address, Dummy(input=value), Keypair.generate()
        )
        message = headers.get("bt_header_axon_status_message", body.get("message"))
        out(
            f"http   POST /Dummy input={value} -> output={body.get('output')} status={status} {message!r} "
            f"in {(time.perf_counter() - start) * 1e3:.1f} ms"
        )
        http_ok = status == 200 and body.get("output") == value * 2
        return 0 if grpc_ok and http_ok else 1
    finally:
        axon.stop()
