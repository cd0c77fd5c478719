"""Server reflection and health checking for the running axon.

Reflection (grpcio-reflection) answers from a descriptor pool of our own holding only
the ``axon.v1.Axon`` service file (rebuilt when a synapse is attached) and the health
and reflection services' files: never the process-wide default pool. Health
(grpcio-health-checking) reports SERVING while the axon serves and NOT_SERVING from
the moment a shutdown begins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from axon_grpc.schema import DEFAULT_PACKAGE, DEFAULT_SERVICE, build_service_file
from axon_grpc.streaming import streaming_schemas

if TYPE_CHECKING:  # pragma: no cover
    import grpc

    from axon_grpc.server.endpoints import Endpoint

SERVICE_NAME = f"{DEFAULT_PACKAGE}.{DEFAULT_SERVICE}"
HEALTH_SERVICE = health.SERVICE_NAME
REFLECTION_SERVICE = reflection.SERVICE_NAME


def _file_proto(descriptor: Any) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    return proto


class DescriptorSource:
    """A descriptor pool that follows the attached synapses.

    The reflection servicer calls ``FindFileByName``, ``FindFileContainingSymbol``
    and friends on it; each call is answered by the pool for the current set of
    endpoints.
    """

    def __init__(self, endpoints: Mapping[str, Endpoint]) -> None:
        self._endpoints = endpoints
        self._key: tuple[int, ...] = ()
        self._pool: descriptor_pool.DescriptorPool | None = None

    def service_file(self) -> descriptor_pb2.FileDescriptorProto:
        """The ``axon.v1.Axon`` service with one method per attached synapse."""
        endpoints = self._endpoints.values()
        streaming = streaming_schemas(endpoint.synapse_class for endpoint in endpoints)
        return build_service_file([endpoint.schema for endpoint in endpoints], streaming=streaming)

    def pool(self) -> descriptor_pool.DescriptorPool:
        key = tuple(id(endpoint) for endpoint in self._endpoints.values())
        if self._pool is None or key != self._key:
            pool = descriptor_pool.DescriptorPool()
            for dependency in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
                pool.Add(_file_proto(dependency))
            pool.Add(self.service_file())
            self._pool, self._key = pool, key
        return self._pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool(), name)


class Discovery:
    """Adds reflection and health to one gRPC server and reports its serving state."""

    def __init__(self, endpoints: Mapping[str, Endpoint]) -> None:
        self.source = DescriptorSource(endpoints)
        self.health = health.aio.HealthServicer()

    def install(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, HEALTH_SERVICE, REFLECTION_SERVICE),
            server,
            pool=self.source,  # type: ignore[arg-type]
        )

    async def serving(self) -> None:
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def shutting_down(self) -> None:
        await self.health.enter_graceful_shutdown()
