"""The legacy Bittensor SDK 10.5.0 Axon serving the same ``Dummy`` synapse: a reference server.

It also streams, as SDK miners do (``create_streaming_response``): ``Story`` sends
``w0 w1 ...`` (``words`` of them) and ``Endless`` sends ``tick `` until the client leaves.

Run as a script by the interpreter of a virtualenv holding ``bittensor==10.5.0``
(``make bench`` builds ``.venv/legacy``); it never imports ``axon_grpc``, whose test extra
pins an incompatible SDK::

    .venv/legacy/bin/python bench/legacy_server.py --port 8093

Prints ``BENCH-READY {json}`` (pid, port, the axon hotkey) once the axon listens; stops
on SIGTERM or SIGINT.
"""

# No "from __future__ import annotations": the SDK reads the annotations of attached functions.

import argparse
import asyncio
import functools
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import ClassVar, Optional, Tuple

# Run as a script, this file's folder (bench) is sys.path[0]: drop it so its
# modules never shadow the SDK's imports.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]


def main() -> int:
    parser = argparse.ArgumentParser(prog="legacy_server.py")
    parser.add_argument("--port", type=int, default=0, help="default 0: a port the system picks (printed)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # bittensor's config parser reads sys.argv

    import bittensor
    from bittensor.core.stream import StreamingSynapse
    from bittensor_wallet import Keypair

    class Dummy(bittensor.Synapse):
        input: int
        output: Optional[int] = None

        required_hash_fields: ClassVar[Tuple[str, ...]] = ("input",)

    def forward(synapse: Dummy) -> Dummy:
        synapse.output = synapse.input * 2
        return synapse

    def blacklist(synapse: Dummy) -> Tuple[bool, str]:
        return synapse.input == 13, "input 13 is blacklisted"

    def priority(synapse: Dummy) -> float:
        return 1.0

    class Story(StreamingSynapse):
        prompt: str = ""
        words: int = 3
        completion: Optional[str] = None

        async def process_streaming_response(self, response):
            async for chunk in response.content.iter_any():
                yield chunk.decode()

        def extract_response_json(self, response) -> dict:
            return {}

    class Endless(Story):
        pass

    def story(synapse: Story) -> StreamingSynapse.BTStreamingResponse:
        async def token_streamer(send) -> None:
            for i in range(synapse.words):
                await send({"type": "http.response.body", "body": f"w{i} ".encode(), "more_body": True})

        return synapse.create_streaming_response(token_streamer)

    def endless(synapse: Endless) -> StreamingSynapse.BTStreamingResponse:
        async def token_streamer(send) -> None:
            while True:
                await send({"type": "http.response.body", "body": b"tick ", "more_body": True})
                await asyncio.sleep(0.02)

        return synapse.create_streaming_response(token_streamer)

    class _Wallet:
        """What the SDK axon reads of a wallet: a hotkey that signs, and a coldkey address."""

        def __init__(self):
            self.hotkey = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
            self.coldkeypub = self.hotkey

    wallet = _Wallet()
    # The port is bound here, before the axon exists (port 0: the system picks), and handed to
    # its uvicorn server, which would otherwise bind the number itself later.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    args.port = listener.getsockname()[1]
    axon = bittensor.Axon(wallet=wallet, port=args.port, ip="127.0.0.1", external_ip="127.0.0.1")
    axon.fast_server.run = functools.partial(type(axon.fast_server).run, axon.fast_server, sockets=[listener])
    axon.attach(forward_fn=forward, blacklist_fn=blacklist, priority_fn=priority)
    axon.attach(forward_fn=story)
    axon.attach(forward_fn=endless)
    axon.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the SDK's start() returns before uvicorn listens
        try:
            socket.create_connection(("127.0.0.1", args.port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    print(
        "BENCH-READY "
        + json.dumps(
            {
                "pid": os.getpid(),
                "port": args.port,
                "hotkey": wallet.hotkey.ss58_address,
                "bittensor": bittensor.__version__,
            }
        ),
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    axon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
