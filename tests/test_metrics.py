"""Metrics: a real axon's /metrics after known calls, counted exactly; the per-hotkey view; off."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import AsyncIterator, Optional

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from axon_grpc import Keypair, Synapse
from axon_grpc.errors import SynapseException
from axon_grpc.metrics.observer import CONTENT_TYPE, TopCallers
from axon_grpc.schema import schema_for
from axon_grpc.streaming import StreamingSynapse
from axon_grpc.testing import serve_axon

from .support import Dummy, RawCaller, dummy_blacklist, dummy_forward

gate = asyncio.Event()


class Gate(Synapse):
    """Its forward holds the one worker slot until the test opens the gate."""

    n: int = 0


async def gate_forward(synapse: Gate) -> Gate:
    await gate.wait()
    return synapse


def dummy_verify(synapse: Dummy) -> None:
    if synapse.input == 7:
        raise SynapseException("seven is refused")  # an AxonError: its own reason (error)
    if synapse.input == 8:
        raise ValueError("eight is refused")  # anything else: 401 Not Verified #{id}


class Words(StreamingSynapse):
    words: int = 3
    text: Optional[str] = None


async def words_forward(synapse: Words) -> AsyncIterator[str]:
    for i in range(synapse.words):
        yield f"w{i}"


def scrape(port: int) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], str]:
    """Every sample of ``GET /metrics`` by (name, sorted labels); and the content type."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
        content_type = response.headers["Content-Type"]
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, content_type


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def grpc_call(raw: RawCaller, name: str, synapse_class: type[Synapse], fields: dict, **overrides: str):
    body = schema_for(synapse_class).to_bytes(fields)
    return await raw.call(name, body, raw.metadata(body, method=name, **overrides))


async def test_scrape_counts_each_outcome_exactly() -> None:
    gate.clear()
    attachments = [
        {"forward_fn": dummy_forward, "blacklist_fn": dummy_blacklist, "verify_fn": dummy_verify},
        gate_forward,
        words_forward,
    ]
    async with serve_axon(
        *attachments, http_port=0, metrics_port=0, max_workers=1, max_queue=0, metrics_hotkeys=2
    ) as h:
        axon = h.axon
        raw = RawCaller(f"127.0.0.1:{axon.port}", axon.wallet.hotkey.ss58_address)
        ok = grpc.StatusCode.OK
        # successes: two plain, and one whose exact request is then replayed (nonce)
        for n in (1, 2):
            assert (await grpc_call(raw, "Dummy", Dummy, {"input": n}))[0] == ok
        body = schema_for(Dummy).to_bytes({"input": 3})
        replayed = raw.metadata(body)
        assert (await raw.call("Dummy", body, replayed))[0] == ok
        assert (await raw.call("Dummy", body, replayed))[0] == grpc.StatusCode.UNAUTHENTICATED
        # signature: signed by another key than the one named
        forged = raw.metadata(body, bt_header_dendrite_signature=Keypair.generate().sign_hex(b"x"))
        assert (await raw.call("Dummy", body, forged))[0] == grpc.StatusCode.UNAUTHENTICATED
        # blacklist, the miner's verify (both ways), malformed metadata, an unknown method
        assert (await grpc_call(raw, "Dummy", Dummy, {"input": 13}))[0] == grpc.StatusCode.PERMISSION_DENIED
        assert (await grpc_call(raw, "Dummy", Dummy, {"input": 7}))[0] == grpc.StatusCode.INTERNAL
        assert (await grpc_call(raw, "Dummy", Dummy, {"input": 8}))[0] == grpc.StatusCode.UNAUTHENTICATED
        bad_nonce = await grpc_call(raw, "Dummy", Dummy, {"input": 1}, bt_header_dendrite_nonce="abc")
        assert bad_nonce[0] == grpc.StatusCode.INVALID_ARGUMENT
        assert (await raw.call("Nope", b""))[0] == grpc.StatusCode.UNIMPLEMENTED
        # deadline: the forward outlives the synapse's timeout
        assert (await grpc_call(raw, "Gate", Gate, {}, timeout="0.2"))[0] == grpc.StatusCode.DEADLINE_EXCEEDED
        # shed: the one slot is busy and the queue holds none
        holder = asyncio.create_task(grpc_call(raw, "Gate", Gate, {"n": 1}))
        for _ in range(500):
            if axon.admission.running == 1:
                break
            await asyncio.sleep(0.01)
        assert (await grpc_call(raw, "Dummy", Dummy, {"input": 4}))[0] == grpc.StatusCode.UNAVAILABLE
        gate.set()
        assert (await holder)[0] == ok
        # a stream of three chunks
        items = [item async for item in h.dendrite.call_stream(h.info, Words(words=3), deserialize=False)]
        assert items[:3] == ["w0", "w1", "w2"] and items[3].dendrite.status_code == 200
        # size: over the HTTP bridge's bound, refused before the pipeline
        request = urllib.request.Request(
            f"http://127.0.0.1:{axon.http_port}/Dummy",
            data=b"x" * 16,
            method="POST",
            headers={"Content-Length": str(axon.http.max_request_bytes + 1)},
        )
        with pytest.raises(urllib.error.HTTPError) as too_large:
            await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        assert too_large.value.code == 413
        too_large.value.close()
        await raw.close()

        samples, content_type = await asyncio.to_thread(scrape, axon.http_port)
        assert content_type == CONTENT_TYPE
        requests = "axon_requests_total"
        assert value(samples, requests, synapse="Dummy", transport="grpc", scheme="legacy", status_class="2xx") == 3
        assert value(samples, requests, synapse="Dummy", transport="grpc", scheme="legacy", status_class="4xx") == 4
        # the malformed nonce was refused before any scheme was decided
        assert value(samples, requests, synapse="Dummy", transport="grpc", scheme="none", status_class="4xx") == 1
        assert value(samples, requests, synapse="Dummy", transport="grpc", scheme="legacy", status_class="5xx") == 2
        assert value(samples, requests, synapse="Gate", transport="grpc", scheme="legacy", status_class="2xx") == 1
        assert value(samples, requests, synapse="Words", transport="grpc", scheme="legacy", status_class="2xx") == 1
        assert value(samples, requests, synapse="_unknown", transport="grpc", scheme="none", status_class="4xx") == 1
        assert value(samples, requests, synapse="Dummy", transport="http", scheme="none", status_class="4xx") == 1
        refusals = {
            ("Dummy", "grpc", "nonce"): 1,
            ("Dummy", "grpc", "signature"): 1,
            ("Dummy", "grpc", "blacklist"): 1,
            ("Dummy", "grpc", "error"): 1,
            ("Dummy", "grpc", "verify"): 1,
            ("Dummy", "grpc", "invalid"): 1,
            ("Dummy", "grpc", "shed"): 1,
            ("Gate", "grpc", "deadline"): 1,
            ("_unknown", "grpc", "not_found"): 1,
            ("Dummy", "http", "size"): 1,
        }
        counted = {
            (dict(labels)["synapse"], dict(labels)["transport"], dict(labels)["reason"]): v
            for (name, labels), v in samples.items()
            if name == "axon_refusals_total" and v
        }
        assert counted == refusals
        # histograms moved: every answered Dummy call timed; forwards and queue waits of admitted ones
        duration = "axon_request_duration_seconds_count"
        assert value(samples, duration, synapse="Dummy", transport="grpc") == 10
        assert value(samples, "axon_request_duration_seconds_sum", synapse="Dummy", transport="grpc") > 0
        assert value(samples, "axon_forward_duration_seconds_count", synapse="Dummy") == 3
        assert value(samples, "axon_forward_duration_seconds_count", synapse="Gate") == 2
        assert value(samples, "axon_queue_wait_seconds_count", synapse="Words") == 1
        assert value(samples, "axon_forward_duration_seconds_bucket", synapse="Gate", le="0.1") < 2  # one ran 0.2 s
        # admission, nonce store, streams, callers, process and build info
        assert value(samples, "axon_admission_shed_total") == 1
        assert value(samples, "axon_admission_expired_total") == 0
        assert value(samples, "axon_admission_queue_depth") == 0 and value(samples, "axon_workers_busy") == 0
        assert value(samples, "axon_workers") == 1
        # signature verified: 3 + replay + blacklist + two verify refusals + 2 Gate + 1 Words
        assert value(samples, "axon_nonce_checks_total", store="memory", verdict="accepted") == 9
        assert value(samples, "axon_nonce_checks_total", store="memory", verdict="not_newer") == 1
        assert value(samples, "axon_nonce_check_duration_seconds_count", store="memory") == 10
        assert value(samples, "axon_nonce_store_healthy", store="memory") == 1
        assert value(samples, "axon_stream_chunks_total", synapse="Words") == 3
        assert value(samples, "axon_streams_open", synapse="Words") == 0
        assert value(samples, "axon_streams_cancelled_total", synapse="Words") == 0
        callers = {
            dict(labels)["hotkey"]: v for (name, labels), v in samples.items() if name == "axon_caller_requests_total"
        }
        assert callers == {raw.keypair.ss58_address: 8, h.dendrite.keypair.ss58_address: 1}
        assert value(samples, "process_cpu_seconds_total") > 0
        builds = [dict(labels) for (name, labels), v in samples.items() if name == "axon_build_info" and v == 1]
        assert len(builds) == 1 and builds[0]["mode"] == "inprocess" and builds[0]["version"]

        # the metrics port answers the same scrape; the embedder's API too
        own, _ = await asyncio.to_thread(scrape, axon.metrics_port)
        assert value(own, requests, synapse="Dummy", transport="grpc", scheme="legacy", status_class="2xx") == 3
        body_bytes, content_type = axon.metrics.exposition()
        assert b"axon_refusals_total" in body_bytes and content_type == CONTENT_TYPE


async def test_a_client_leaving_a_stream_counts_as_cancelled() -> None:
    async def endless_forward(synapse: Words) -> AsyncIterator[str]:
        while True:
            yield "tick"
            await asyncio.sleep(0.01)

    async with serve_axon(endless_forward) as h:
        stream = h.dendrite.call_stream(h.info, Words(), timeout=10)
        assert await stream.__anext__() == "tick"
        await stream.aclose()
        metrics = h.axon.metrics
        assert metrics is not None
        for _ in range(300):
            if h.axon.admission.running == 0 and metrics.streams_cancelled.labels("Words")._value.get() == 1:
                break
            await asyncio.sleep(0.01)
        text = metrics.exposition()[0].decode()
        assert 'axon_streams_cancelled_total{synapse="Words"} 1.0' in text
        assert 'axon_streams_open{synapse="Words"} 0.0' in text
        assert 'axon_refusals_total{reason="cancelled",synapse="Words",transport="grpc"} 1.0' in text


async def test_metrics_off_serves_no_metrics_route() -> None:
    async with serve_axon(dummy_forward, metrics=False, http_port=0) as h:
        assert h.axon.metrics is None
        assert (await h.call(Dummy(input=2))).output == 4
        with pytest.raises(urllib.error.HTTPError) as missing:
            await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{h.axon.http_port}/metrics")
        assert missing.value.code == 404
        missing.value.close()


def test_top_callers_stay_bounded_and_keep_the_heavy_ones() -> None:
    top = TopCallers(2, capacity=4)
    for i in range(1000):
        top.add("heavy")
        top.add(f"once-{i}")
        if i % 2:
            top.add("medium")
    assert len(top.counts) == 4
    assert [hotkey for hotkey, _ in top.top()] == ["heavy", "medium"]


async def test_a_flood_of_scrapes_builds_one_a_second() -> None:
    """``/metrics`` is on the public port and a scrape costs tens of calls' CPU: a stranger's
    flood of them is answered from the last one, rebuilt at most once a second."""
    async with serve_axon(dummy_forward, http_port=0) as h:
        metrics = h.axon.metrics
        assert metrics is not None
        built = []
        exposition = metrics.exposition

        def counted() -> tuple[bytes, str]:
            built.append(1)
            return exposition()

        metrics.exposition = counted  # type: ignore[method-assign]
        url = f"http://127.0.0.1:{h.axon.http_port}/metrics"

        def flood() -> float:
            began = time.monotonic()
            for _ in range(40):
                with urllib.request.urlopen(url, timeout=10) as response:
                    assert response.status == 200 and b"axon_requests_total" in response.read()
            return time.monotonic() - began

        took = await asyncio.to_thread(flood)
        assert len(built) <= int(took) + 1 < 40
