"""The verified echo as an ASGI gRPC application on Envoy (pyvoy): ``axon-grpc serve``'s floor.

The same checks as the grpc.aio verified echo (``servers.verified_echo_refusal``: the
method-bound body hash, one sr25519 verify, a dict nonce check) and nothing else: the
request message comes back as the answer, with ``grpc-status`` in trailers. What the
``envoy`` target costs above this is the axon's pipeline and the edge adapter.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from axon_grpc.auth.keys import Keypair

from .servers import EDGE_SEED_ENV, verified_echo_refusal

_CONTENT = [(b"content-type", b"application/grpc")]
_OK = [(b"grpc-status", b"0")]


class VerifiedEcho:
    def __init__(self) -> None:
        self.hotkey: str | None = None
        self.nonces: dict[str, int] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (event := await receive())["type"] != "lifespan.shutdown":
                self.hotkey = Keypair.create_from_seed(os.environ[EDGE_SEED_ENV]).ss58_address
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        message = body[5:]
        refused = verified_echo_refusal(scope["path"], message, headers, self.hotkey or "", self.nonces)
        if refused is not None:
            status = [(b"grpc-status", b"16"), (b"grpc-message", refused.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": _CONTENT + status})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": _CONTENT, "trailers": True})
        await send({"type": "http.response.body", "body": struct.pack(">BI", 0, len(message)) + message})
        await send({"type": "http.response.trailers", "headers": _OK, "more_trailers": False})


app = VerifiedEcho()
