"""An edge application over a fake pipeline, to test the gRPC adapter inside Envoy.

The pipeline answers by the method name (``Echo``, ``Fail``, ``Slow``, ``Count``,
``Peer``, ``Stats``); the codec carries reply bytes in ``Outcome.synapse``. The legacy
side is a tiny ASGI app answering ``http {path}``.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, AsyncIterator

from axon_grpc.edge.app import EdgeApp
from axon_grpc.errors import grpc_status_number
from axon_grpc.server.call import Call, Outcome
from axon_grpc.transports.asgi_health import Health
from axon_grpc.transports.asgi_reflection import Reflection
from axon_grpc.transports.grpc_asgi import GrpcAsgi

STATS = {"cancelled": 0, "stream_closed": 0, "slow_started": 0, "legacy_started": 0}


class FakePipeline:
    async def handle(self, call: Call) -> Outcome:
        name = call.name
        if call.body is None and name != "Slow":
            assert call.read_body is not None
            call.body = await call.read_body()
        meta = {"bt_header_axon_status_code": "200"}
        if name == "Echo":
            return Outcome(200, "Success", synapse=(call.body, meta))  # type: ignore[arg-type]
        if name == "Fail":
            return Outcome(403, "Forbidden: caf\u00e9 100%", synapse=(b"", {"bt_header_axon_status_code": "403"}))  # type: ignore[arg-type]
        if name == "Slow":
            STATS["slow_started"] += 1
            try:
                await asyncio.sleep(float(call.body or b"5"))
            except asyncio.CancelledError:
                STATS["cancelled"] += 1
                raise
            return Outcome(200, "Success", synapse=(b"slept", meta))  # type: ignore[arg-type]
        if name == "Peer":
            info = {
                "ip": call.peer_ip,
                "enforced": call.deadline_enforced,
                "deadline": call.deadline is not None,
                "headers": dict(call.headers),
                "path": call.path,
            }
            return Outcome(200, "Success", synapse=(json.dumps(info).encode(), meta))  # type: ignore[arg-type]
        if name == "Pid":
            return Outcome(200, "Success", synapse=(str(os.getpid()).encode(), meta))  # type: ignore[arg-type]
        if name == "Stats":
            return Outcome(200, "Success", synapse=(json.dumps(STATS).encode(), meta))  # type: ignore[arg-type]
        if name == "Count":
            count = int(call.body or b"3")
            outcome = Outcome(200, "Success", synapse=(b"final", meta))  # type: ignore[arg-type]

            async def chunks() -> AsyncIterator[Any]:
                try:
                    for i in range(count):
                        yield f"chunk{i}".encode()
                        await asyncio.sleep(0.01)
                finally:
                    STATS["stream_closed"] += 1

            outcome.stream = chunks()
            return outcome
        return Outcome(404, f"Synapse name '{name}' not found", synapse=(b"", {}))  # type: ignore[arg-type]


class FakeCodec:
    @staticmethod
    def reply_message(outcome: Outcome) -> bytes:
        return outcome.synapse[0]  # type: ignore[index, no-any-return]

    @staticmethod
    async def stream_messages(outcome: Outcome) -> AsyncIterator[bytes]:
        assert outcome.stream is not None
        async for chunk in outcome.stream:
            yield chunk
        yield outcome.synapse[0]  # type: ignore[index]

    @staticmethod
    def trailer_headers(outcome: Outcome) -> list[tuple[bytes, bytes]]:
        return [(k.encode(), v.encode()) for k, v in outcome.synapse[1].items()]  # type: ignore[index]

    @staticmethod
    def status_number(outcome: Outcome) -> int:
        return grpc_status_number(outcome.status)


async def legacy(scope: Any, receive: Any, send: Any) -> None:
    STATS["legacy_started"] += 1
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    reply = json.dumps({"path": scope["path"], "method": scope["method"], "size": len(body)}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": reply})


def _pool() -> Any:
    from google.protobuf import descriptor_pool
    from grpc_health.v1 import health_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    from axon_grpc.transports.aio_discovery import _file_proto

    pool = descriptor_pool.DescriptorPool()
    for file in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        pool.Add(_file_proto(file))
    return pool


health = Health(("fake.Service",), drain_file=os.environ.get("AXON_GRPC_EDGE_DRAIN_FILE"))
reflection = Reflection(_pool(), ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"))
app = EdgeApp(
    GrpcAsgi(
        FakePipeline(),
        FakeCodec,
        max_message_bytes=64 * 1024,  # type: ignore[arg-type]
        services={**health.methods(), **reflection.methods()},
    ),  # type: ignore[dict-item]
    legacy,
    health,
)
