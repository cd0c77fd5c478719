"""``grpc.health.v1.Health`` on the edge: SERVING until a drain begins, then NOT_SERVING.

The drain is announced from outside the Envoy process (``axon-grpc serve`` got
SIGTERM) by creating a marker file whose path the app was given; a check looks for
it, so no channel between the processes is needed.
"""

from __future__ import annotations

import asyncio
import os
from typing import Iterable

from grpc_health.v1 import health_pb2

from axon_grpc.transports.grpc_asgi import OK, GrpcStream, _until_disconnect
from axon_grpc.transports.grpc_wire import MessageReader, Receive

SERVICE = "grpc.health.v1.Health"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
NOT_FOUND = 5

#: How often a ``Watch`` looks at the state again.
WATCH_INTERVAL_S = 0.25


class Health:
    """Answers ``Check`` and ``Watch`` for ``services`` ("" is the whole server)."""

    def __init__(self, services: Iterable[str], drain_file: str | None = None) -> None:
        self.services = {"", *services}
        self.drain_file = drain_file
        self.draining = False

    def drain(self) -> None:
        """From now on, every service is NOT_SERVING."""
        self.draining = True

    def status(self, service: str) -> int:
        if service not in self.services:
            return SERVICE_UNKNOWN
        if not self.draining and self.drain_file and os.path.exists(self.drain_file):
            self.draining = True
        return NOT_SERVING if self.draining else SERVING

    def methods(self) -> dict[str, object]:
        return {f"/{SERVICE}/Check": self.check, f"/{SERVICE}/Watch": self.watch}

    @staticmethod
    async def _request(reader: MessageReader) -> health_pb2.HealthCheckRequest:
        return health_pb2.HealthCheckRequest.FromString(await reader.only())

    async def check(self, reader: MessageReader, stream: GrpcStream, receive: Receive) -> None:
        request = await self._request(reader)
        status = self.status(request.service)
        if status == SERVICE_UNKNOWN:
            await stream.finish(NOT_FOUND, "unknown service")
            return
        await stream.message(health_pb2.HealthCheckResponse(status=status).SerializeToString())
        await stream.finish(OK)

    async def watch(self, reader: MessageReader, stream: GrpcStream, receive: Receive) -> None:
        request = await self._request(reader)
        gone = asyncio.ensure_future(_until_disconnect(receive))  # never cancelled (see there)
        sent = None
        while not gone.done():
            status = self.status(request.service)
            if status != sent:
                await stream.message(health_pb2.HealthCheckResponse(status=status).SerializeToString())
                sent = status
            if self.draining:  # a watch must not hold the drain up: it ends once it said so
                await stream.finish(OK)
                return
            await asyncio.wait((gone,), timeout=WATCH_INTERVAL_S)
