"""Streaming synapses over gRPC: chunks then the final synapse, hooks, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import base64
from typing import Any, AsyncIterator, ClassVar, Optional

import grpc
import pytest
from pydantic import BaseModel

from axon_grpc import Dendrite, KeypairWallet
from axon_grpc.schema import schema_for
from axon_grpc.streaming import CHUNK_TAG, FINAL_TAG, StreamingSynapse, chunk_schema, frame, unframe
from axon_grpc.testing import serve_axon

from .support import RawCaller


class Story(StreamingSynapse):
    prompt: str = ""
    words: int = 3
    completion: Optional[str] = None


events: list[str] = []


async def story_forward(synapse: Story) -> AsyncIterator[str]:
    parts = []
    try:
        for i in range(synapse.words):
            word = f"w{i}"
            parts.append(word)
            yield word
            await asyncio.sleep(0)
        synapse.completion = " ".join(parts)
    except GeneratorExit:
        events.append("closed")
        raise
    except asyncio.CancelledError:
        events.append("cancelled")
        raise


def story_blacklist(synapse: Story) -> tuple[bool, str]:
    return synapse.words == 13, "unlucky"


class Token(BaseModel):
    text: str = ""
    logprob: float = 0.0


class Tokens(StreamingSynapse):
    chunk_type: ClassVar[Any] = Token
    n: int = 2


async def tokens_forward(synapse: Tokens) -> AsyncIterator[Token]:
    for i in range(synapse.n):
        yield Token(text=f"t{i}", logprob=-float(i))


class Legacy(StreamingSynapse):
    n: int = 2


def legacy_forward(synapse: Legacy) -> Any:
    async def token_streamer(send) -> None:
        for i in range(synapse.n):
            await send({"type": "http.response.body", "body": f"tok{i} ".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return synapse.create_streaming_response(token_streamer)


class Prompting(StreamingSynapse):
    """The subnet template's streaming tutorial shape: the client reads the chunks itself."""

    prompt: str = ""
    completion: str = ""
    model: str = ""

    async def process_streaming_response(self, response: Any) -> AsyncIterator[list[str]]:
        async for chunk in response.content.iter_any():
            tokens = chunk.decode("utf-8").split("\n")
            for token in tokens:
                if token:
                    self.completion += token
            yield tokens

    def extract_response_json(self, response: Any) -> dict:
        return {"prompt": self.prompt, "completion": self.completion, "model": self.model}


def prompting_forward(synapse: Prompting) -> Any:
    async def token_streamer(send) -> None:
        for word in synapse.prompt.split():
            await send({"type": "http.response.body", "body": f"{word.upper()}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    synapse.model = "upper-1"  # a field the client's processing leaves alone: the final message fills it
    return synapse.create_streaming_response(token_streamer)


class Endless(StreamingSynapse):
    pass


async def endless_forward(synapse: Endless) -> AsyncIterator[str]:
    try:
        while True:
            yield "tick"
            await asyncio.sleep(0.02)
    except GeneratorExit:
        events.append("endless closed")
        raise
    except asyncio.CancelledError:
        events.append("endless cancelled")
        raise


class Bad(StreamingSynapse):
    pass


async def bad_forward(synapse: Bad) -> AsyncIterator[Any]:
    yield "fine"
    yield {"not": "a string"}


ATTACHED = [
    {"forward_fn": story_forward, "blacklist_fn": story_blacklist},
    tokens_forward,
    legacy_forward,
    prompting_forward,
    endless_forward,
    bad_forward,
]


@pytest.fixture
async def harness():
    events.clear()
    async with serve_axon(*ATTACHED) as h:
        yield h


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def test_chunks_then_the_final_synapse(harness) -> None:
    items = await collect(
        await harness.dendrite.forward(harness.info, Story(words=3), streaming=True, deserialize=False)
    )
    assert items[:3] == ["w0", "w1", "w2"]
    final = items[3]
    assert isinstance(final, Story) and final.completion == "w0 w1 w2"
    assert final.dendrite.status_code == 200 and final.axon.status_code == 200
    assert harness.axon.admission.running == 0


async def test_model_chunks_and_legacy_token_streamers(harness) -> None:
    items = await collect(harness.dendrite.call_stream(harness.info, Tokens(n=2)))
    assert items[:2] == [Token(text="t0", logprob=0.0), Token(text="t1", logprob=-1.0)]
    legacy = await collect(harness.dendrite.call_stream(harness.info, Legacy(n=3), deserialize=False))
    assert legacy[:3] == ["tok0 ", "tok1 ", "tok2 "] and legacy[3].dendrite.status_code == 200


async def test_a_legacy_stream_fills_the_synapse_through_its_own_processing(harness) -> None:
    items = await collect(
        harness.dendrite.call_stream(harness.info, Prompting(prompt="one two three"), deserialize=False)
    )
    assert items[:3] == [["ONE", ""], ["TWO", ""], ["THREE", ""]]  # what process_streaming_response yields
    final = items[3]
    assert final.completion == "ONETWOTHREE"  # filled on the client, as an SDK dendrite does
    assert final.model == "upper-1" and final.prompt == "one two three"
    assert final.dendrite.status_code == 200
    # without streaming=True the chunks are dropped but still processed
    result = await harness.call(Prompting(prompt="a b"))
    assert result.completion == "AB" and result.is_success


async def test_non_streaming_call_of_a_streaming_synapse_returns_the_final_synapse(harness) -> None:
    result = await harness.call(Story(words=2))
    assert result.completion == "w0 w1" and result.is_success


async def test_streaming_flag_needs_a_streaming_synapse(harness) -> None:
    from .support import Dummy

    with pytest.raises(ValueError, match="streaming=True needs a StreamingSynapse; Dummy is not one"):
        await harness.dendrite.forward(harness.info, Dummy(input=1), streaming=True)


async def test_blacklist_applies_to_streams(harness) -> None:
    raw = RawCaller(f"127.0.0.1:{harness.axon.port}", harness.axon.wallet.hotkey.ss58_address)
    body = schema_for(Story).to_bytes({"words": 13})
    metadata = raw.metadata(body, method="Story", bt_header_input_obj_words=base64.b64encode(b"13").decode())
    call = raw.channel.unary_stream("/axon.v1.Axon/Story")(body, metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await collect(call)
    await raw.close()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == "Forbidden. Key is blacklisted: unlucky."


async def test_endless_stream_is_cut_at_the_deadline(harness) -> None:
    items = await collect(harness.dendrite.call_stream(harness.info, Endless(), timeout=0.4, deserialize=False))
    final = items[-1]
    assert len(items) > 2 and set(items[:-1]) == {"tick"}
    assert final.dendrite.status_code == 408 and final.is_timeout
    for _ in range(100):
        if events:
            break
        await asyncio.sleep(0.01)
    assert events and events[0].startswith("endless")
    assert harness.axon.admission.running == 0


async def test_client_leaving_mid_stream_closes_the_forward(harness) -> None:
    stream = harness.dendrite.call_stream(harness.info, Endless(), timeout=10)
    assert await stream.__anext__() == "tick"
    await stream.aclose()  # the client goes away
    for _ in range(200):
        if events and harness.axon.admission.running == 0:
            break
        await asyncio.sleep(0.01)
    assert events == ["endless cancelled"] or events == ["endless closed"]
    assert harness.axon.admission.running == 0
    again = await collect(harness.dendrite.call_stream(harness.info, Story(words=1)))
    assert again[0] == "w0"


async def test_unserializable_chunk_is_a_500_and_the_axon_lives_on(harness) -> None:
    items = await collect(harness.dendrite.call_stream(harness.info, Bad(), deserialize=False))
    assert items[0] == "fine"
    assert items[-1].dendrite.status_code == 500
    assert items[-1].dendrite.status_message.startswith("Internal Server Error #")
    assert (await harness.call(Story(words=1))).is_success


async def test_wrong_call_shapes_get_clear_statuses(harness) -> None:
    raw = RawCaller(f"127.0.0.1:{harness.axon.port}", harness.axon.wallet.hotkey.ss58_address)
    body = schema_for(Story).to_bytes({"words": 2})
    # A unary call to a streaming method: several messages arrive where one was expected;
    # the server cannot tell, the client library fails the call (grpcio: at its deadline).
    status, _, details, _ = await raw.call("Story", body, timeout=1.0)
    assert status in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL), (status, details)
    # A streaming call to a unary method: one plain message, not a {Name}Stream frame.
    from .support import Dummy, dummy_forward

    harness.axon.attach(forward_fn=dummy_forward)
    dummy_body = schema_for(Dummy).to_bytes({"input": 2})
    stream = raw.channel.unary_stream("/axon.v1.Axon/Dummy")(dummy_body, metadata=raw.metadata(dummy_body))
    messages = await collect(stream)
    await raw.close()
    assert len(messages) == 1
    with pytest.raises(ValueError):
        unframe(messages[0] + b"\x00")
    assert (await harness.call(Story(words=1))).is_success


async def test_streams_share_the_admission_slots() -> None:
    async with serve_axon(endless_forward, max_workers=1) as h:
        first = h.dendrite.call_stream(h.info, Endless(), timeout=5)
        assert await first.__anext__() == "tick"
        assert h.axon.admission.running == 1
        second = asyncio.create_task(
            collect(Dendrite(KeypairWallet.generate()).call_stream(h.info, Endless(), timeout=0.3))
        )
        result = await second
        assert result[-1].dendrite.status_code == 408  # waited for the slot, never ran
        assert h.axon.admission.stats.admitted == 1  # only the first stream ever ran
        await first.aclose()


def test_framing_round_trip() -> None:
    for tag, payload in [(CHUNK_TAG, b""), (FINAL_TAG, b"x" * 300)]:
        assert unframe(frame(tag, payload)) == (tag, payload)
    with pytest.raises(ValueError):
        unframe(b"\x1a\x00")
    assert chunk_schema(Tokens).name == "TokensChunk"


def test_emitted_proto_declares_the_stream(tmp_path) -> None:
    from axon_grpc.cli.codegen import render

    text = render([Story, Tokens])
    assert "rpc Story(axon.v1.Story) returns (stream axon.v1.StoryStream);" in text
    assert "message StoryChunk {\n  string data = 1;\n}" in text
    assert "StoryChunk chunk = 1;" in text and "Story final = 2;" in text
    assert "message TokensChunk {" in text and "Token data = 1;" in text
