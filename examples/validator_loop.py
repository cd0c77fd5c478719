"""The validator loop of docs/validators.md, one step of it: a miner serves on subnet 1 in the local
registry and the validator scores what every axon of the subnet answers."""
import asyncio
from axon_grpc import Dendrite, LocalRegistry
from my_subnet import Dummy                    # the subnet's synapse (input -> output = 2 * input)

async def validate(wallet, netuid: int, subtensor=None) -> None:
    dendrite = Dendrite(wallet, transport="auto", verify_response=False)
    async with dendrite:                       # closes its connections at the end
        while True:
            if subtensor is not None:          # a Bittensor subtensor: the chain's axon records
                axons = subtensor.metagraph(netuid).axons
            else:                              # the local registry (`axon.serve(netuid)`)
                axons = LocalRegistry().axons(netuid)
            results = await dendrite.forward(axons, Dummy(input=7), timeout=12.0, deserialize=False)
            scores = [1.0 if r.is_success and r.output == 14 else 0.0 for r in results]
            for axon, r in zip(axons, results):   # gRPC and legacy miners alike
                print(axon.hotkey[:8], dendrite.transport_for(axon), r.dendrite.status_code, r.dendrite.status_message)
            # ... set weights from scores ...
            await asyncio.sleep(12)


async def main() -> None:
    from axon_grpc import Axon, KeypairWallet
    from axon_grpc.cli.demo import forward

    miner = Axon(ip="127.0.0.1", external_ip="127.0.0.1")  # port: BT_AXON_PORT or 8091
    miner.attach(forward_fn=forward)
    await miner.start_async()
    miner.serve(netuid=1)
    try:
        await asyncio.wait_for(validate(KeypairWallet.generate(), 1), timeout=5)  # one step, then stop
    except asyncio.TimeoutError:
        pass
    await miner.stop_async()
    print("one step done")


asyncio.run(main())
