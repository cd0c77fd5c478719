"""The streaming example of docs/getting-started.md: a forward that yields words, called with streaming=True."""
import asyncio
from typing import Optional

from axon_grpc import Axon, Dendrite, StreamingSynapse


def generate(prompt: str) -> list[str]:
    return f"once upon a time {prompt}".split()


class Story(StreamingSynapse):
    prompt: str = ""
    completion: Optional[str] = None

async def forward(synapse: Story):
    words = []
    for word in generate(synapse.prompt):
        words.append(word)
        yield word                      # one chunk
    synapse.completion = " ".join(words)  # the final synapse is sent last


async def main() -> None:
    axon = Axon(ip="127.0.0.1", external_ip="127.0.0.1")  # port: BT_AXON_PORT or 8091
    axon.attach(forward_fn=forward)
    await axon.start_async()
    axon_info = axon.info()
    async with Dendrite() as dendrite:
        async for item in await dendrite.forward(axon_info, Story(prompt="hi"), streaming=True):
            print(item)                         # chunks..., then the final Story with its status
    await axon.stop_async()


asyncio.run(main())
