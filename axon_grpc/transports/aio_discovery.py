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
from axon_grpc.schema.contract import CONTRACT_ANNOUNCEMENT, CONTRACT_TRAILER
from axon_grpc.streaming import streaming_schemas

if TYPE_CHECKING:  # pragma: no cover
    import grpc

    from axon_grpc.server.endpoints import Endpoint

SERVICE_NAME = f"{DEFAULT_PACKAGE}.{DEFAULT_SERVICE}"
#: ``FileDescriptorProto.service``'s field number: the first element of a service's source path.
FILE_SERVICE_FIELD = 6
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

    def FindFileByName(self, name: str) -> Any:
        return _announced(self.pool().FindFileByName(name))

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        return _announced(self.pool().FindFileContainingSymbol(symbol))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool(), name)


def announce(proto: descriptor_pb2.FileDescriptorProto) -> None:
    """Write into the ``axon.v1.Axon`` service's comment which contract and rules the axon
    speaks (rule R22): reflection clients see it (``grpcurl describe axon.v1.Axon``)."""
    for index, service in enumerate(proto.service):
        if service.name == DEFAULT_SERVICE:
            location = proto.source_code_info.location.add()
            location.path.extend([FILE_SERVICE_FIELD, index])
            location.span.extend([0, 0, 0])
            location.leading_comments = f" {CONTRACT_TRAILER}: {CONTRACT_ANNOUNCEMENT} (docs/SPEC.md)\n"


class AnnouncedFile:
    """The service's file descriptor as reflection serves it: with :func:`announce`'s comment
    (a descriptor pool keeps no comments, so they are added as the file is copied out)."""

    __slots__ = ("file",)

    def __init__(self, file: Any) -> None:
        self.file = file

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        self.file.CopyToProto(proto)
        announce(proto)


def _announced(file: Any) -> Any:
    return AnnouncedFile(file) if file.package == DEFAULT_PACKAGE and DEFAULT_SERVICE in file.services_by_name else file


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
