"""A Dendrite's legacy HTTP transport: ``POST http://{ip}:{port}/{Name}`` as an SDK 10.5
dendrite sends it, to legacy axons and to this project's HTTP bridge.

A streaming synapse's answer (``text/event-stream``, or any body) is read by its own
``process_streaming_response(response)`` and finished by ``extract_response_json(response)``
and the ``bt_header_axon_*`` headers, as an SDK 10.5 dendrite does; the reads it makes are
bounded by the call's deadline and by ``max_answer_bytes`` (:class:`BoundedContent`).

One aiohttp session per event loop, its connector unbounded (an SDK 10.5 dendrite's
default connector holds 100 connections, so a 256-axon step queues behind slow axons)
and keeping connections alive between steps.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any, AsyncIterator, Awaitable, Callable

from axon_grpc.client.answer import (
    Result,
    axon_status,
    fill,
    read_axon,
    timeout_result,
    unavailable_result,
    unverified_result,
)
from axon_grpc.client.signing import RequestSigner
from axon_grpc.info import AxonInfo
from axon_grpc.synapse import Synapse, answer_body_hash, answer_fields

#: aiohttp rounds deadlines of timeouts above ``ceil_threshold`` (5 s) up to the next whole
#: second of the loop's clock: up to a second late on a 12 s step. Never round.
_NEVER_CEIL = float("inf")
#: Seconds an idle connection is kept for the next step (a validator's step is ~12 s apart).
KEEPALIVE_S = 75.0
#: Bytes a Dendrite reads of one HTTP answer at most (a stream in total, or a JSON body),
#: as the gRPC link's largest message; past it the call fails with 413.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


def _parse(raw: bytes) -> Any:
    """The answer's JSON; a miner's JSON nested too deeply for the parser is a ValueError too."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class HttpLink:
    """Calls axons with the legacy HTTP protocol and a :class:`RequestSigner`."""

    def __init__(
        self, signer: RequestSigner, verify_response: bool = False, max_answer_bytes: int = MAX_ANSWER_BYTES
    ) -> None:
        self.signer = signer
        self.verify_response = verify_response
        self.max_answer_bytes = max_answer_bytes
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def too_large(self) -> str:
        """The status message of an answer past ``max_answer_bytes`` (413)."""
        return f"Answer too large: limit is {self.max_answer_bytes} bytes"

    def session(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        found = self._sessions.get(loop)
        if found is None or found.closed:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S, ttl_dns_cache=None)
            found = self._sessions[loop] = aiohttp.ClientSession(connector=connector)
        return found

    async def call(self, info: AxonInfo, synapse: Synapse, timeout: float) -> Result:
        """One request; fills ``synapse`` from a 200 (once verified, when asked)."""
        import aiohttp

        name = type(synapse).__name__
        headers, body = self.signer.http(info, synapse, timeout)
        url = f"http://{info.ip_str()}/{name}"
        try:
            async with self.session().post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout, ceil_threshold=_NEVER_CEIL),
            ) as response:
                announced = response.content_length
                if announced is not None and announced > self.max_answer_bytes:
                    raise AnswerTooLarge(self.too_large())  # refused before a byte of it is read
                deadline = asyncio.get_running_loop().time() + timeout
                raw = await BoundedContent(response.content, deadline, self.max_answer_bytes).read()
                status = response.status
                read_axon(synapse, response.headers.items())
        except asyncio.TimeoutError:
            return timeout_result(timeout)
        except AnswerTooLarge as e:
            return Result(413, str(e))
        except (aiohttp.ClientError, OSError):
            return unavailable_result(info.ip_str(), name)
        return self._payload(info, synapse, status, raw)

    async def stream(self, info: AxonInfo, synapse: Any, timeout: float, done: list[Result]) -> AsyncIterator[Any]:
        """Each chunk ``synapse.process_streaming_response`` makes of the answer; the final
        fields go into ``synapse``, the status into ``done``.

        The final fields are the user fields that ``synapse.extract_response_json(response)``
        returns (only those: the SDK 10.5 dendrite also resets every field it leaves out to
        its default); the axon's status comes from the headers. The stream's answer is not
        signed.
        """
        import aiohttp

        name = type(synapse).__name__
        headers, body = self.signer.http(info, synapse, timeout)
        url = f"http://{info.ip_str()}/{name}"
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with self.session().post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout, ceil_threshold=_NEVER_CEIL),
            ) as response:
                read_axon(synapse, response.headers.items())
                content = response.content = BoundedContent(response.content, deadline, self.max_answer_bytes)
                if response.status != 200:
                    done.append(self._payload(info, synapse, response.status, await content.read()))
                    return
                async for chunk in synapse.process_streaming_response(response):
                    yield chunk
                payload = synapse.extract_response_json(response)
        except asyncio.TimeoutError:
            done.append(timeout_result(timeout))
            return
        except AnswerTooLarge as e:
            done.append(Result(413, str(e)))
            return
        except aiohttp.ClientPayloadError as e:  # the body ended early: the SDK's status for it
            done.append(Result(400, f"Payload error: {e}"))
            return
        except (aiohttp.ClientError, OSError):
            done.append(unavailable_result(info.ip_str(), name))
            return
        except Exception as e:  # the synapse's own parsing failed (a line too long, bad JSON...)
            done.append(Result(422, f"Failed to parse response: {e}"))
            return
        if not isinstance(payload, dict):
            done.append(Result(422, "Failed to parse response: extract_response_json returned no dict"))
            return
        done.append(self._merge(synapse, payload))

    def _payload(self, info: AxonInfo, synapse: Synapse, status: int, raw: bytes) -> Result:
        """The status of a finished JSON answer, ``synapse`` filled from a 200."""
        try:
            payload = _parse(raw) if raw else {}
        except ValueError as e:
            return Result(422, f"Failed to parse response: {e}")
        if not isinstance(payload, dict):
            return Result(422, "Failed to parse response: not a JSON object")
        if status != 200:
            code, message = axon_status(synapse, "")
            return Result(code if code is not None and code != 200 else status, str(payload.get("message") or message))
        return self._answered(info, synapse, payload)

    def _answered(self, info: AxonInfo, synapse: Synapse, payload: dict[str, Any]) -> Result:
        answer, problem = _validated(synapse, payload)
        if answer is None:
            return Result(422, f"Failed to parse response: {problem}")
        if self.verify_response:
            axon = synapse.axon
            refusal = self.signer.answer_problem(
                synapse, info.hotkey, answer_body_hash(answer), axon.signature if axon is not None else None
            )
            if refusal is not None:
                return unverified_result(refusal)
        return _filled(synapse, answer, payload)

    @staticmethod
    def _merge(synapse: Synapse, payload: dict[str, Any]) -> Result:
        answer, problem = _validated(synapse, payload)
        if answer is None:
            return Result(422, f"Failed to parse response: {problem}")
        return _filled(synapse, answer, payload)

    def connection_count(self) -> int:
        return sum(len(getattr(s.connector, "_conns", {})) for s in self._sessions.values() if not s.closed)

    async def aclose(self) -> None:
        """Close the session of the running loop."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()


def _filled(synapse: Synapse, answer: Synapse, payload: dict[str, Any]) -> Result:
    """Fill ``synapse`` with the user fields ``payload`` answered (as validated in ``answer``);
    the axon's status."""
    fill(synapse, {k: answer.__dict__[k] for k in answer_fields(type(synapse)) if k in payload})
    status, message = axon_status(synapse)
    return Result(status if status is not None else 200, message)


def _validated(synapse: Synapse, payload: dict[str, Any]) -> tuple[Synapse | None, str]:
    """``synapse`` with the answered user fields of ``payload``, validated (or None and why not)."""
    cls = type(synapse)
    try:
        answer = cls.model_validate({**synapse.__dict__, **{k: payload[k] for k in answer_fields(cls) if k in payload}})
    except ValueError as e:
        return None, str(e)
    return answer, ""


class AnswerTooLarge(Exception):
    """An answer's body passed the Dendrite's ``max_answer_bytes``."""


class BoundedContent:
    """``response.content`` of a streamed answer, as the synapse's
    ``process_streaming_response`` reads it: aiohttp's reader methods, each refused once
    the call's deadline has passed (asyncio.TimeoutError) or once the body has passed
    ``limit`` bytes (:class:`AnswerTooLarge`).

    aiohttp's own total timeout only fires while a read waits for the network, so a miner
    that keeps the buffer full would never meet it; the checks here do not wait. Anything
    else (aiohttp's own calls on its reader) goes to the reader unchanged.
    """

    def __init__(self, inner: Any, deadline: float, limit: int) -> None:
        self._inner = inner
        self._deadline = deadline
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        #: Bytes handed out so far.
        self.received = 0

    def _check(self) -> None:
        if self._loop.time() >= self._deadline:
            raise asyncio.TimeoutError
        if self.received > self._limit:
            raise AnswerTooLarge(f"Answer too large: limit is {self._limit} bytes")

    def _count(self, data: bytes) -> bytes:
        self.received += len(data)
        self._check()
        return data

    async def readany(self) -> bytes:
        self._check()
        return self._count(await self._inner.readany())

    async def read(self, n: int = -1) -> bytes:
        self._check()
        if n >= 0:
            return self._count(await self._inner.read(n))
        blocks = []
        while block := await self.readany():
            blocks.append(block)
        return b"".join(blocks)

    async def readline(self) -> bytes:
        self._check()
        return self._count(await self._inner.readline())

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        self._check()
        return self._count(await self._inner.readuntil(separator))

    async def readexactly(self, n: int) -> bytes:
        self._check()
        if n > self._limit - self.received:
            raise AnswerTooLarge(f"Answer too large: limit is {self._limit} bytes")
        return self._count(await self._inner.readexactly(n))

    async def readchunk(self) -> tuple[bytes, bool]:
        self._check()
        data, end = await self._inner.readchunk()
        return self._count(data), end

    def read_nowait(self, n: int = -1) -> bytes:
        self._check()
        return self._count(self._inner.read_nowait(n))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def at_eof(self) -> bool:
        return bool(self._inner.at_eof())

    def exception(self) -> BaseException | None:
        return self._inner.exception()  # type: ignore[no-any-return]

    def iter_any(self) -> AsyncIterator[bytes]:
        return _until_empty(self.readany)

    def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        return _until_empty(lambda: self.read(n))

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        while (chunk := await self.readchunk()) != (b"", False):
            yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _until_empty(self.readline)


async def _until_empty(read: Callable[[], Awaitable[bytes]]) -> AsyncIterator[bytes]:
    while data := await read():
        yield data
