"""The registry example of docs/getting-started.md: serve on subnet 1 in the local registry, call every axon of it."""
import asyncio

from axon_grpc import Axon, Dendrite
from axon_grpc.cli.demo import Dummy, forward


async def call_subnet(dendrite: Dendrite) -> list:
    from axon_grpc import Dendrite, LocalRegistry

    axons = LocalRegistry().axons(1)                       # list[AxonInfo]
    results = await dendrite.forward(axons, Dummy(input=3))
    results = await dendrite.forward(synapse=Dummy(input=3), netuid=1)   # the same
    return results


async def main() -> None:
    axon = Axon(ip="127.0.0.1", external_ip="127.0.0.1")  # port: BT_AXON_PORT or 8091
    axon.attach(forward_fn=forward)
    await axon.start_async()
    axon.serve(netuid=1)  # no subtensor: the local registry ($AXON_GRPC_REGISTRY)
    async with Dendrite() as dendrite:
        print(await call_subnet(dendrite))  # [6]
    await axon.stop_async()


asyncio.run(main())
