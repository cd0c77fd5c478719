"""A Dendrite's gRPC transport: one channel per axon address and event loop, reused across calls."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, AsyncIterator

import grpc

from axon_grpc.auth.legacy import reply_hash
from axon_grpc.client.answer import (
    Result,
    axon_status,
    fill,
    read_axon,
    timeout_result,
    unavailable_result,
    unverified_result,
)
from axon_grpc.client.sessions import ClientSession, SessionKeeper, SessionOpenFailed, needs_reopen
from axon_grpc.client.signing import RequestSigner, SigningWindow
from axon_grpc.client.tls import ClientTls
from axon_grpc.info import AxonInfo
from axon_grpc.schema import schema_for
from axon_grpc.streaming import CHUNK_TAG, StreamedBody, chunk_encoder, chunk_schema, processes_chunks, unframe
from axon_grpc.synapse import Synapse
from axon_grpc.transports.grpc_codec import METHOD_PREFIX, http_status_for

#: Channel options: keep idle connections healthy without flooding the server.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


#: Channel states in which a call goes out (or fails) at once.
_SETTLED = frozenset(
    {grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN}
)


def _failure(error: grpc.aio.AioRpcError, synapse: Synapse, info: AxonInfo, timeout: float) -> Result:
    """The status of a failed call. No ``bt_header_axon_*`` trailer and UNAVAILABLE: no axon
    answered in gRPC (nothing listens, or the server speaks another protocol)."""
    read_axon(synapse, error.trailing_metadata())
    status, message = axon_status(synapse, error.details() or "")
    if status is not None:
        return Result(status, message)
    code = error.code()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return timeout_result(timeout)
    if ClientTls.refused(error):
        return Result(
            503,
            f"TLS handshake with {info.ip_str()} failed: its certificate is not the pinned one "
            "or not signed by a trusted CA (or it refused this client's certificate)",
        )
    if code is grpc.StatusCode.UNAVAILABLE:
        return unavailable_result(info.ip_str(), type(synapse).__name__)
    return Result(http_status_for(code), error.details() or code.name)


class GrpcLink:
    """Calls axons over gRPC with a :class:`RequestSigner`; over TLS where ``tls`` knows
    whom to trust for an axon (a CA, or a pinned certificate), else in cleartext."""

    def __init__(
        self,
        signer: RequestSigner,
        verify_response: bool = False,
        tls: ClientTls | None = None,
        sessions: str = "off",
    ) -> None:
        self.signer = signer
        #: The sessions with axons (``axon-session/1``), used as ``sessions`` says (auto, off, required).
        self.sessions = SessionKeeper(sessions, signer.keypair, signer.crypto)
        self.verify_response = verify_response
        self.tls = tls if tls is not None else ClientTls.build(None, None, None, None)
        self._channels: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, bytes | None], grpc.aio.Channel]
        ] = weakref.WeakKeyDictionary()
        #: One signing window per axon (each axon keeps its own replay window of our uuid).
        self._windows: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SigningWindow]] = (
            weakref.WeakKeyDictionary()
        )

    async def slot(self, info: AxonInfo, timeout: float) -> tuple[SigningWindow, int, float] | None:
        """A signing slot of the window for ``info``'s axon on this loop (SPEC R23): the window,
        the call's number in it and the seconds left of ``timeout``; None when none came within
        ``timeout``. Calls to other axons never wait on it: a validator's fan-out is not held
        back by one slow miner."""
        loop = asyncio.get_running_loop()
        window = self._windows.setdefault(loop, {}).setdefault(info.ip_str(), SigningWindow())
        began = loop.time()
        try:
            seq = await asyncio.wait_for(window.enter(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return None
        return window, seq, max(timeout - (loop.time() - began), 0.001)

    def channel(self, info: AxonInfo) -> grpc.aio.Channel:
        channels = self._channels.setdefault(asyncio.get_running_loop(), {})
        address = info.ip_str()
        roots = self.tls.roots(info)
        found = channels.get((address, roots))
        if found is None:
            if roots is None:
                found = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            else:
                found = grpc.aio.secure_channel(address, self.tls.credentials(roots), options=CHANNEL_OPTIONS)
            channels[(address, roots)] = found
        return found

    async def ready_channel(self, info: AxonInfo, timeout: float) -> grpc.aio.Channel:
        """The channel to ``info``, connected (waiting at most ``timeout``; a call on a channel
        that did not connect fails as it would have).

        A call is signed once its connection is up: calls made while it connects are held by
        gRPC and may start in another order than they were made, and a nonce overtaken by
        more than the axon's replay window (64) of the same ``hotkey:uuid`` is refused. What
        bounds that for calls reordered anywhere (transport, axon) is the signing window
        (:meth:`slot`, SPEC R23).
        """
        channel = self.channel(info)
        state = channel.get_state(try_to_connect=True)
        if state in _SETTLED:
            return channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while state not in _SETTLED and loop.time() < deadline:  # a refused connection fails at once, as before
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), deadline - loop.time())
            except (asyncio.TimeoutError, TimeoutError):
                break
            state = channel.get_state()
        return channel

    def channel_count(self) -> int:
        return sum(len(c) for c in self._channels.values())

    async def call(self, info: AxonInfo, synapse: Synapse, timeout: float) -> Result:
        """One unary call; fills ``synapse`` from the answer (once verified, when asked)."""
        slot = await self.slot(info, timeout)
        if slot is None:
            return timeout_result(timeout)
        window, seq, left = slot
        try:
            return await self._call(info, synapse, left)
        finally:
            window.finish(seq)

    async def _session(
        self, info: AxonInfo, channel: grpc.aio.Channel, timeout: float
    ) -> ClientSession | Result | None:
        """The session for a call to ``info`` (None: sign it), or the Result of a call that cannot
        be made (``sessions="required"`` and no session opened)."""
        try:
            return await self.sessions.session(info.ip_str(), info.hotkey, channel, timeout)
        except SessionOpenFailed as e:
            return Result(e.status, f"session open failed: {e.message}")

    async def _call(self, info: AxonInfo, synapse: Synapse, timeout: float) -> Result:
        schema = schema_for(type(synapse))
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        channel = await self.ready_channel(info, timeout)
        method = channel.unary_unary(METHOD_PREFIX + type(synapse).__name__)
        address = info.ip_str()
        # A session the axon no longer holds gets one new one; when that one is refused too (a
        # balancer spreading one connection's calls over hosts), the call is signed and this axon
        # gets signed calls for a while (``required``: a third session, or the refusal).
        for attempt in (1, 2, 3):
            left = ends - loop.time()
            if left <= 0:
                return timeout_result(timeout)
            session = await self._session(info, channel, left)
            if isinstance(session, Result):
                return session
            left = max(ends - loop.time(), 0.001)
            body, metadata = self.signer.grpc(info, synapse, left, schema, session)
            try:
                call = method(body, metadata=metadata, timeout=left)
                response = await call
                trailers = await call.trailing_metadata()
            except grpc.aio.AioRpcError as e:
                self.sessions.learn(address, info.hotkey, e.trailing_metadata())
                if session is not None and attempt < 3 and needs_reopen(http_status_for(e.code()), e.details()):
                    self.sessions.forget(address, info.hotkey, session, back_off=attempt == 2)
                    continue
                return _failure(e, synapse, info, timeout)
            self.sessions.learn(address, info.hotkey, trailers)
            read_axon(synapse, trailers)
            break
        if self.verify_response:
            axon = synapse.axon
            problem = self.signer.answer_problem(
                synapse, info.hotkey, reply_hash(response), axon.signature if axon is not None else None, session
            )
            if problem is not None:
                return unverified_result(problem)
        try:
            fill(synapse, schema.from_bytes(response))
        except ValueError as e:
            return Result(422, f"Failed to parse response: {e}")
        status, message = axon_status(synapse)
        return Result(status if status is not None else 200, message)

    async def stream(self, info: AxonInfo, synapse: Synapse, timeout: float, done: list[Result]) -> AsyncIterator[Any]:
        """Each chunk of a streaming call; the final fields go into ``synapse``, the status into ``done``.

        A class that overrides ``process_streaming_response`` reads the chunks itself, as
        with an SDK dendrite: it is handed a :class:`StreamedBody` and what it yields is
        yielded; the fields it set keep its values, the final message fills the others.
        The stream's answer is not signed (``verify_response`` covers unary calls).
        """
        slot = await self.slot(info, timeout)
        if slot is None:
            done.append(timeout_result(timeout))
            return
        window, seq, left = slot
        ends = asyncio.get_running_loop().time() + left
        try:
            async for item in self._stream(info, synapse, left, done):
                yield item
            # A session the axon no longer holds, refused before any chunk: once more, by a new one.
            left = ends - asyncio.get_running_loop().time()
            if done and needs_reopen(done[-1].status, done[-1].message) and left > 0:
                done.pop()
                async for item in self._stream(info, synapse, left, done):
                    yield item
        finally:
            window.finish(seq)

    async def _stream(self, info: AxonInfo, synapse: Synapse, timeout: float, done: list[Result]) -> AsyncIterator[Any]:
        cls = type(synapse)
        schema = schema_for(cls)
        chunks = chunk_schema(cls)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        channel = await self.ready_channel(info, timeout)
        session = await self._session(info, channel, max(ends - loop.time(), 0.001))
        if isinstance(session, Result):
            done.append(session)
            return
        left = ends - loop.time()  # what connecting and opening a session left of the timeout
        if left <= 0:
            done.append(timeout_result(timeout))
            return
        body, metadata = self.signer.grpc(info, synapse, left, schema, session)
        call = channel.unary_stream(METHOD_PREFIX + cls.__name__)(body, metadata=metadata, timeout=left)
        final: list[bytes] = []

        async def values() -> AsyncIterator[Any]:
            async for message in call:
                tag, payload = unframe(message)
                if tag == CHUNK_TAG:
                    yield chunks.cls.model_validate(chunks.from_bytes(payload)).data  # type: ignore[attr-defined]
                else:
                    final.append(payload)

        try:
            if processes_chunks(cls):
                before = synapse.model_dump()
                encode = chunk_encoder(cls)  # type: ignore[arg-type]
                raw = (encode(value) async for value in values())
                async for item in synapse.process_streaming_response(StreamedBody(raw)):  # type: ignore[attr-defined]
                    yield item
                async for _ in values():  # what the processing left unread
                    pass
                after = synapse.model_dump()
                kept = {key for key in after if after[key] != before.get(key)}
            else:
                async for value in values():
                    yield value
                kept = set()
            if final:
                fill(synapse, {k: v for k, v in schema.from_bytes(final[-1]).items() if k not in kept})
            trailers = await call.trailing_metadata()
            self.sessions.learn(info.ip_str(), info.hotkey, trailers)
            read_axon(synapse, trailers)
            status, text = axon_status(synapse)
            done.append(Result(status if status is not None else 200, text))
        except grpc.aio.AioRpcError as e:
            if session is not None and needs_reopen(http_status_for(e.code()), e.details()):
                self.sessions.forget(info.ip_str(), info.hotkey, session)  # the next call opens another
            done.append(_failure(e, synapse, info, timeout))
        except ValueError as e:
            done.append(Result(422, f"Failed to parse response: {e}"))
        finally:
            if not call.done():
                call.cancel()

    async def aclose(self) -> None:
        """Close the channels opened on the running loop."""
        channels = self._channels.pop(asyncio.get_running_loop(), {})
        await asyncio.gather(*(c.close() for c in channels.values()))
