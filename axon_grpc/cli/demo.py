"""The demo: the production path, ``axon-grpc serve`` on Envoy, answering on its one port a
signed gRPC call from the Dendrite, a call the way a legacy (SDK 7.2-10.5) dendrite makes it
over HTTP, and a ``/metrics`` scrape (:func:`run_serve_demo`). Where Envoy cannot run
(pyvoy missing), the in-process servers instead: gRPC and the HTTP bridge on two ports
(:func:`run_demo`)."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import threading
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

#: The in-process demo's HTTP bridge port when ``--axon.http_port`` is not given (0: the system picks).
DEMO_HTTP_PORT = 0

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


def build_axon() -> Axon:
    """The demo's axon factory for ``axon-grpc serve axon_grpc.cli.demo:build_axon``."""
    return Axon().attach(forward_fn=forward, blacklist_fn=blacklist, priority_fn=priority)


#: What ``axon-grpc serve`` prints: the hotkey it signs with, and the port Envoy listens on.
_HOTKEY_LINE = re.compile(r"^axon-grpc: hotkey (\S+);")
_SERVING_LINE = re.compile(r"^axon-grpc: Envoy serving gRPC and legacy HTTP on (\S+):(\d+) ")


def run_serve_demo(config: Config, value: int = 21, out: Any = print, start_timeout: float = 60.0) -> int:
    """``axon-grpc serve`` on Envoy (one port), called over gRPC and legacy HTTP and scraped
    for metrics, each answer printed; the in-process servers where pyvoy cannot run. 0 on success."""
    from axon_grpc.edge.serve import pyvoy_missing

    missing = pyvoy_missing()
    if missing is not None:
        out(f"edge   Envoy cannot run here: {missing}")
        out("edge   showing the in-process servers instead (axon.start(): gRPC and HTTP on two ports)")
        return run_demo(config, value, out)
    section = config.get("axon") or Config()
    host = str(section.get("ip") or "127.0.0.1").strip("[]")
    host = "127.0.0.1" if host in ("", "::", "0.0.0.0") else host
    command = [sys.executable, "-m", "axon_grpc", "serve", "axon_grpc.cli.demo:build_axon", "--axon.ip", host]
    command += ["--axon.port", str(section.get("port") or 0), "--grace", "1"]  # 0: a port the system picks
    wallet = config.get("wallet") or Config()
    if wallet.get("name"):  # a wallet named on the command line; else serve's default, as the axon's
        command += [f"--wallet.{name}={wallet[name]}" for name in ("name", "hotkey", "path") if wallet.get(name)]
    out("serve  $ axon-grpc serve axon_grpc.cli.demo:build_axon " + " ".join(command[5:]))
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        found = _read_serving(process, out, start_timeout)
        if found is None:
            out(f"serve  did not start (exit status {process.poll()})")
            return 1
        hotkey, port = found
        return 0 if all(call(host, port, hotkey, value, out) for call in (_grpc_call, _http_call, _scrape)) else 1
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(5)
        out(f"serve  stopped on SIGTERM (exit status {code})")


def _read_serving(process: subprocess.Popen[str], out: Any, timeout: float) -> tuple[str, int] | None:
    """Print what ``serve`` says until Envoy listens; its hotkey and port (None if it exited)."""
    assert process.stderr is not None
    stderr = process.stderr
    found: dict[str, Any] = {}
    ready = threading.Event()

    def read() -> None:
        with stderr:
            for line in stderr:
                if not ready.is_set():
                    out("serve  " + line.rstrip().removeprefix("axon-grpc: "))
                hotkey, serving = _HOTKEY_LINE.match(line), _SERVING_LINE.match(line)
                if hotkey:
                    found["hotkey"] = hotkey.group(1)
                if serving:
                    found["port"] = int(serving.group(2))
                    ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(timeout)
    if "port" not in found or "hotkey" not in found:
        return None
    return found["hotkey"], found["port"]


def _grpc_call(host: str, port: int, hotkey: str, value: int, out: Any) -> bool:
    from axon_grpc.info import AxonInfo

    info = AxonInfo(version=0, ip=host, port=port, ip_type=6 if ":" in host else 4, hotkey=hotkey, coldkey="")
    dendrite = Dendrite()
    try:
        result = dendrite.query(info, Dummy(input=value), timeout=12.0, deserialize=False)
    finally:
        dendrite.close_session()
    d = result.dendrite
    out(
        f"grpc   Dummy(input={value}) -> output={result.output} status={d.status_code} {d.status_message!r} "
        f"in {(d.process_time or 0) * 1e3:.1f} ms (signed gRPC call, port {port})"
    )
    return bool(result.is_success and result.output == value * 2)


def _http_call(host: str, port: int, hotkey: str, value: int, out: Any) -> bool:
    start = time.perf_counter()
    status, body, headers = legacy_http_call(host, port, hotkey, Dummy(input=value), Keypair.generate())
    message = headers.get("bt_header_axon_status_message", body.get("message"))
    out(
        f"http   POST /Dummy input={value} -> output={body.get('output')} status={status} {message!r} "
        f"in {(time.perf_counter() - start) * 1e3:.1f} ms (legacy SDK 10.5 request, port {port})"
    )
    return status == 200 and body.get("output") == value * 2


def _scrape(host: str, port: int, hotkey: str, value: int, out: Any) -> bool:
    url_host = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{url_host}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    answered = [
        line
        for line in text.splitlines()
        if line.startswith("axon_requests_total{") and 'synapse="Dummy"' in line and not line.endswith(" 0.0")
    ]
    out(f"scrape GET /metrics -> {len(text.splitlines())} lines (port {port}), the calls above among them:")
    for line in answered:
        out(f"         {line}")
    counted = {transport for transport in ("grpc", "http") for line in answered if f'transport="{transport}"' in line}
    return counted == {"grpc", "http"}


def run_demo(config: Config, value: int = 21, out: Any = print) -> int:
    """Start an axon in-process, call it once over gRPC and once over the HTTP bridge; 0 on success."""
    section = config.setdefault("axon", Config())
    if section.get("http_port") is None:
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
