"""Server reflection lists and describes the service; health follows the lifecycle."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from axon_grpc.testing import serve_axon

from .support import Dummy, RawCaller, dummy_forward


def reflect(address: str) -> tuple[list[str], descriptor_pool.DescriptorPool, descriptor_pb2.FileDescriptorProto]:
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        served = database.FindFileContainingSymbol("axon.v1.Axon")
        pool = descriptor_pool.DescriptorPool(database)
        # Resolve what a reflection-driven client needs while the channel is open.
        pool.FindServiceByName("axon.v1.Axon")
        pool.FindServiceByName("grpc.health.v1.Health")
        return services, pool, served


async def test_reflection_lists_services_and_describes_each_method() -> None:
    async with serve_axon(dummy_forward) as h:
        address = f"127.0.0.1:{h.axon.port}"
        services, pool, served = await asyncio.to_thread(reflect, address)
        assert services == ["axon.v1.Axon", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
        service = pool.FindServiceByName("axon.v1.Axon")
        methods = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in service.methods}
        assert methods == {
            "Synapse": ("axon.v1.Synapse", "axon.v1.Synapse"),
            "Dummy": ("axon.v1.Dummy", "axon.v1.Dummy"),
        }
        fields = {f.name: f.number for f in pool.FindMessageTypeByName("axon.v1.Dummy").fields}
        assert fields == {"input": 1, "output": 2}
        # the service's comment names the contract and its rules (rule R22)
        comments = [loc.leading_comments for loc in served.source_code_info.location if list(loc.path) == [6, 0]]
        assert comments == [" axon-contract: axon.v1;rules=27 (docs/SPEC.md)\n"]

        # A client that knows only what reflection told it builds and signs a call.
        request_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("axon.v1.Dummy"))
        body = request_cls(input=9).SerializeToString()
        raw = RawCaller(address, h.axon.wallet.hotkey.ss58_address)
        status, response, _, _ = await raw.call("Dummy", body)
        await raw.close()
        assert status == grpc.StatusCode.OK
        assert request_cls.FromString(response).output == 18


async def test_reflection_follows_attach_and_hides_other_descriptors() -> None:
    class Later(Dummy):
        pass

    def later_forward(synapse: Later) -> Later:
        return synapse

    async with serve_axon(dummy_forward) as h:
        address = f"127.0.0.1:{h.axon.port}"
        h.axon.attach(forward_fn=later_forward)
        _, pool, _ = await asyncio.to_thread(reflect, address)
        names = [m.name for m in pool.FindServiceByName("axon.v1.Axon").methods]
        assert names == ["Synapse", "Dummy", "Later"]

        def lookup_foreign() -> bool:
            with grpc.insecure_channel(address) as channel:
                database = ProtoReflectionDescriptorDatabase(channel)
                try:
                    database.FindFileContainingSymbol("google.protobuf.FileDescriptorProto")
                except KeyError:
                    return False
                return True

        assert await asyncio.to_thread(lookup_foreign) is False


async def test_health_serving_then_not_serving_during_shutdown() -> None:
    async with serve_axon(dummy_forward) as h:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{h.axon.port}")
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "axon.v1.Axon"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="axon.v1.Axon"))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(h.axon.stop_async(grace=1.0))
        second = await asyncio.wait_for(watch.read(), 5)
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
        await channel.close()
        await h.axon.start_async()  # the harness stops it again on exit
