"""gRPC server reflection on the edge (``v1alpha`` and ``v1``, which share their messages).

Reflection is a bidirectional stream: each request message is answered as it
arrives, from a descriptor pool (the axon's :class:`~axon_grpc.transports.aio_discovery.DescriptorSource`,
which holds only the ``axon.v1.Axon`` service file and the health and reflection files).
A file is sent with the files it depends on.
"""

from __future__ import annotations

from typing import Any, Sequence

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from axon_grpc.transports.grpc_asgi import OK, GrpcStream
from axon_grpc.transports.grpc_wire import MessageReader, Receive

SERVICES = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")
NOT_FOUND = 5


def _file_bytes(descriptor: Any) -> list[bytes]:
    """``descriptor`` and its dependencies, each as a serialized FileDescriptorProto."""
    ordered: list[bytes] = []
    seen: set[str] = set()
    pending = [descriptor]
    while pending:
        current = pending.pop(0)
        if current.name in seen:
            continue
        seen.add(current.name)
        proto = descriptor_pb2.FileDescriptorProto()
        current.CopyToProto(proto)
        ordered.append(proto.SerializeToString())
        pending.extend(current.dependencies)
    return ordered


class Reflection:
    """Answers ``ServerReflectionInfo`` from ``pool`` for the listed ``services``."""

    def __init__(self, pool: Any, services: Sequence[str]) -> None:
        self.pool = pool
        self.services = list(services)

    def methods(self) -> dict[str, object]:
        return {f"/{service}/ServerReflectionInfo": self.info for service in SERVICES}

    def answer(self, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        response = reflection_pb2.ServerReflectionResponse(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                response.list_services_response.service.extend(
                    reflection_pb2.ServiceResponse(name=name) for name in self.services
                )
            elif kind == "file_by_filename":
                files = _file_bytes(self.pool.FindFileByName(request.file_by_filename))
                response.file_descriptor_response.file_descriptor_proto.extend(files)
            elif kind == "file_containing_symbol":
                files = _file_bytes(self.pool.FindFileContainingSymbol(request.file_containing_symbol))
                response.file_descriptor_response.file_descriptor_proto.extend(files)
            else:  # extensions: the served files declare none
                response.error_response.error_code = NOT_FOUND
                response.error_response.error_message = "not found"
        except KeyError:
            response.error_response.error_code = NOT_FOUND
            response.error_response.error_message = "not found"
        return response

    async def info(self, reader: MessageReader, stream: GrpcStream, receive: Receive) -> None:
        while (message := await reader.next()) is not None:
            request = reflection_pb2.ServerReflectionRequest.FromString(message)
            await stream.message(self.answer(request).SerializeToString())
        await stream.finish(OK)
