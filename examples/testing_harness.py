"""The testing example of docs/getting-started.md: an axon on a loopback port and a connected Dendrite."""
import asyncio
from typing import Optional

from axon_grpc import Synapse


class Dummy(Synapse):
    input: int
    output: Optional[int] = None


def forward(synapse: Dummy) -> Dummy:
    synapse.output = synapse.input * 2
    return synapse


from axon_grpc.testing import serve_axon

async def test_forward():
    async with serve_axon(forward) as h:
        result = await h.call(Dummy(input=3))
        assert result.output == 6 and result.is_success


asyncio.run(test_forward())
print("ok")
