"""A Dendrite's legacy HTTP transport: ``POST http://{ip}:{port}/{Name}`` as an SDK 10.5
dendrite sends it, to legacy axons and to this project's HTTP bridge.

One aiohttp session per event loop, its connector unbounded (an SDK 10.5 dendrite's
default connector holds 100 connections, so a 256-axon step queues behind slow axons)
and keeping connections alive between steps.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from .dendrite_answer import (
    Result,
    axon_status,
    fill,
    read_axon,
    timeout_result,
    unavailable_result,
    unverified_result,
)
from .dendrite_signing import RequestSigner
from .info import AxonInfo
from .synapse import Synapse, answer_body_hash, answer_fields

#: aiohttp rounds deadlines of timeouts above ``ceil_threshold`` (5 s) up to the next whole
#: second of the loop's clock: up to a second late on a 12 s step. Never round.
_NEVER_CEIL = float("inf")
#: Seconds an idle connection is kept for the next step (a validator's step is ~12 s apart).
KEEPALIVE_S = 75.0
#: Largest answer body read from a miner (the gRPC link's receive limit): past it, 413.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: Client-side status of an answer past ``MAX_ANSWER_BYTES`` (gRPC's RESOURCE_EXHAUSTED).
TOO_LARGE = 413


class AnswerTooLarge(Exception):
    """A miner's answer body passed the limit; the rest of it was not read."""


async def read_bounded(response: Any, limit: int) -> bytes:
    """The body of ``response``, refusing one past ``limit`` bytes before holding more.

    A hostile miner's endless or huge body costs at most ``limit`` bytes of memory (its
    time is bounded by the call's timeout).
    """
    announced = response.content_length
    if announced is not None and announced > limit:
        raise AnswerTooLarge()
    body = bytearray()
    while chunk := await response.content.read(min(65536, limit + 1 - len(body))):
        body += chunk
        if len(body) > limit:
            raise AnswerTooLarge()
    return bytes(body)


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
                raw = await read_bounded(response, self.max_answer_bytes)
                status = response.status
                read_axon(synapse, response.headers.items())
        except asyncio.TimeoutError:
            return timeout_result(timeout)
        except AnswerTooLarge:
            return Result(TOO_LARGE, f"Answer too large: limit is {self.max_answer_bytes} bytes")
        except (aiohttp.ClientError, OSError):
            return unavailable_result(info.ip_str(), name)
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
        cls = type(synapse)
        fields = answer_fields(cls)
        try:
            answer = cls.model_validate({**synapse.__dict__, **{k: payload[k] for k in fields if k in payload}})
        except ValueError as e:
            return Result(422, f"Failed to parse response: {e}")
        if self.verify_response:
            axon = synapse.axon
            problem = self.signer.answer_problem(
                synapse, info.hotkey, answer_body_hash(answer), axon.signature if axon is not None else None
            )
            if problem is not None:
                return unverified_result(problem)
        fill(synapse, {k: answer.__dict__[k] for k in fields if k in payload})
        status, message = axon_status(synapse)
        return Result(status if status is not None else 200, message)

    def connection_count(self) -> int:
        return sum(len(getattr(s.connector, "_conns", {})) for s in self._sessions.values() if not s.closed)

    async def aclose(self) -> None:
        """Close the session of the running loop."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()
