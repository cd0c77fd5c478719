"""Streaming synapses over the HTTP bridge: text/event-stream, read as a legacy dendrite does."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any, AsyncIterator, ClassVar

from pydantic import BaseModel

from axon_grpc.streaming import StreamingSynapse

from .test_bridge_client import serve_bridge

events: list[str] = []


class Story(StreamingSynapse):
    prompt: str = ""
    words: int = 3


async def story_forward(synapse: Story) -> AsyncIterator[str]:
    for i in range(synapse.words):
        yield f"w{i} "
        await asyncio.sleep(0)


def story_blacklist(synapse: Story) -> tuple[bool, str]:
    return synapse.words == 13, "unlucky"


class Point(BaseModel):
    x: int = 0


class Points(StreamingSynapse):
    chunk_type: ClassVar[Any] = Point
    n: int = 2


async def points_forward(synapse: Points) -> AsyncIterator[Point]:
    for i in range(synapse.n):
        yield Point(x=i)


class Legacy(StreamingSynapse):
    n: int = 2


def legacy_forward(synapse: Legacy) -> Any:
    async def token_streamer(send) -> None:
        for i in range(synapse.n):
            await send({"type": "http.response.body", "body": f"tok{i}|".encode(), "more_body": True})

    return synapse.create_streaming_response(token_streamer)


class Prompting(StreamingSynapse):
    """The subnet template's streaming tutorial shape: the client reads the chunks itself."""

    prompt: str = ""
    completion: str = ""

    async def process_streaming_response(self, response: Any) -> AsyncIterator[list[str]]:
        async for chunk in response.content.iter_any():
            tokens = chunk.decode("utf-8").split("\n")
            for token in tokens:
                if token:
                    self.completion += token
            yield tokens


def prompting_forward(synapse: Prompting) -> Any:
    async def token_streamer(send) -> None:
        for word in synapse.prompt.split():
            await send({"type": "http.response.body", "body": f"{word.upper()}\n".encode(), "more_body": True})

    return synapse.create_streaming_response(token_streamer)


class Endless(StreamingSynapse):
    pass


async def endless_forward(synapse: Endless) -> AsyncIterator[str]:
    try:
        while True:
            yield "tick "
            await asyncio.sleep(0.02)
    except (GeneratorExit, asyncio.CancelledError):
        events.append("endless stopped")
        raise


ATTACHED = [
    {"forward_fn": story_forward, "blacklist_fn": story_blacklist},
    points_forward,
    legacy_forward,
    prompting_forward,
    endless_forward,
]


async def stream(client, synapse, *, timeout: float = 12.0, headers_update: dict | None = None):
    """POST like a legacy dendrite's call_stream and read the body chunk by chunk."""
    headers, body = client.prepare(synapse, timeout=timeout)
    headers.update(headers_update or {})
    response = await client.session.post(f"{client.base_url}/{type(synapse).__name__}", headers=headers, data=body)
    return response


async def test_chunks_arrive_as_an_event_stream_with_the_synapse_headers() -> None:
    async with serve_bridge(*ATTACHED) as b:
        response = await stream(b.client, Story(words=3))
        assert response.status == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["bt_header_axon_status_code"] == "200"
        assert response.headers["bt_header_axon_status_message"] == "Success"
        assert response.headers["name"] == "Story"
        chunks = [chunk async for chunk in Story().process_streaming_response(response)]
        response.release()
    assert "".join(chunks) == "w0 w1 w2 "


async def test_model_chunks_are_json_lines_and_token_streamers_pass_through() -> None:
    async with serve_bridge(*ATTACHED) as b:
        points = await stream(b.client, Points(n=3))
        lines = (await points.read()).decode().splitlines()
        legacy = await stream(b.client, Legacy(n=3))
        text = (await legacy.read()).decode()
    assert [json.loads(line) for line in lines] == [{"x": 0}, {"x": 1}, {"x": 2}]
    assert text == "tok0|tok1|tok2|"


async def test_a_legacy_stream_fills_the_synapse_through_its_own_processing() -> None:
    """What an SDK 10.5 dendrite's call_stream does with the bridge's body."""
    async with serve_bridge(*ATTACHED) as b:
        response = await stream(b.client, Prompting(prompt="one two three"))
        assert response.status == 200
        synapse = Prompting(prompt="one two three")
        tokens = [t async for t in synapse.process_streaming_response(response)]
        response.release()
    assert [token for chunk in tokens for token in chunk if token] == ["ONE", "TWO", "THREE"]
    assert synapse.completion == "ONETWOTHREE"


async def test_refusals_before_the_first_chunk_keep_their_status() -> None:
    async with serve_bridge(*ATTACHED) as b:
        blacklisted = await stream(
            b.client, Story(words=13), headers_update={"bt_header_input_obj_words": base64.b64encode(b"13").decode()}
        )
        assert blacklisted.status == 403
        assert (await blacklisted.json())["message"] == "Forbidden. Key is blacklisted: unlucky."
    async with serve_bridge(*ATTACHED, max_workers=1, max_queue=0) as b:
        holding = await stream(b.client, Endless())
        assert holding.status == 200
        shed = await stream(b.client, Story(words=1))
        assert shed.status == 503
        assert (await shed.json())["message"] == "Service unavailable: server overloaded"
        holding.close()


async def test_stream_ends_at_the_deadline_and_frees_its_slot() -> None:
    events.clear()
    async with serve_bridge(*ATTACHED) as b:
        started = time.monotonic()
        response = await stream(b.client, Endless(), timeout=0.5)
        body = await response.read()
        assert response.status == 200 and body.startswith(b"tick ")
        assert time.monotonic() - started < 3
        for _ in range(100):
            if events and b.axon.admission.running == 0:
                break
            await asyncio.sleep(0.01)
        assert events == ["endless stopped"] and b.axon.admission.running == 0


async def test_client_leaving_mid_stream_cancels_the_forward() -> None:
    events.clear()
    async with serve_bridge(*ATTACHED) as b:
        response = await stream(b.client, Endless())
        assert await response.content.readany()
        response.close()  # the dendrite goes away
        for _ in range(200):
            if events and b.axon.admission.running == 0:
                break
            await asyncio.sleep(0.01)
        assert events == ["endless stopped"] and b.axon.admission.running == 0
        again = await stream(b.client, Story(words=1))
        assert await again.read() == b"w0 "


async def test_the_app_alone_streams_too() -> None:
    """``axon.app`` without the middleware in front (as under a test client) streams the same."""
    import httpx

    async with serve_bridge(*ATTACHED) as b:
        headers, body = b.client.prepare(Story(words=2))
        transport = httpx.ASGITransport(app=b.axon.app, client=("127.0.0.1", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://axon") as client:
            response = await client.post("/Story", headers=headers, content=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text == "w0 w1 "
