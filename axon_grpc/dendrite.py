"""The Dendrite: the Python client that signs synapses and calls axons over gRPC."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid as uuid_lib
import weakref
from typing import Any, AsyncIterator, Sequence, TypeVar

import grpc

from . import btauth
from ._types import WalletLike
from .auth import CRYPTO_HEADER, PROTOCOL_VERSION, grpc_body_hash
from .errors import http_status_for
from .info import AxonInfo
from .keys import Keypair
from .schema import schema_for
from .streaming import CHUNK_TAG, chunk_schema, is_streaming, unframe
from .synapse import AXON_PREFIX, DENDRITE_PREFIX, Synapse, TerminalInfo
from .transport import METHOD_PREFIX

S = TypeVar("S", bound=Synapse)

#: The signing schemes a Dendrite speaks.
AUTH_SCHEMES = ("legacy", "btauth")

#: Channel options: keep idle connections healthy without flooding the server.
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def _target_info(target: Any) -> AxonInfo:
    if isinstance(target, AxonInfo):
        return target
    info = getattr(target, "info", None)
    if callable(info):
        return info()
    raise TypeError(f"cannot call {type(target).__name__}: pass an AxonInfo or an Axon")


class Dendrite:
    """Signs each request with ``wallet.hotkey`` and calls one or many axons concurrently.

    ``wallet`` is anything with ``hotkey.ss58_address`` and ``hotkey.sign(message)``;
    without one, a throw-away sr25519 key is generated. ``auth="btauth"`` signs the
    way Bittensor SDK 11's ``http_auth`` does instead of the legacy way.
    """

    def __init__(
        self, wallet: WalletLike | None = None, *, external_ip: str | None = None, auth: str = "legacy"
    ) -> None:
        if auth not in AUTH_SCHEMES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_SCHEMES)}, not {auth!r}")
        #: How requests are signed: ``legacy`` (``bt_header_*``) or ``btauth`` (SDK 11's btauth/1).
        self.auth = auth
        if wallet is None:
            self.keypair: Any = Keypair.generate()
        else:
            self.keypair = getattr(wallet, "hotkey", wallet)
        self.crypto: str = getattr(self.keypair, "crypto_type", "sr25519")
        if isinstance(self.crypto, int):  # Bittensor keypairs number their crypto types
            self.crypto = "ed25519" if self.crypto == 0 else "sr25519"
        self.uuid = str(uuid_lib.uuid1())
        self.external_ip = external_ip or "127.0.0.1"
        self._channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, grpc.aio.Channel]] = (
            weakref.WeakKeyDictionary()
        )
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._sync_thread: threading.Thread | None = None

    # -- public API -------------------------------------------------------------------------
    async def forward(
        self,
        axons: Any = None,
        synapse: Synapse | None = None,
        timeout: float = 12.0,
        deserialize: bool = True,
        run_async: bool = True,
        streaming: bool = False,
        *,
        netuid: int | None = None,
    ) -> Any:
        """Send ``synapse`` to one axon (returns one result) or a list (returns a list).

        Each axon gets its own copy. With ``deserialize`` the result is
        ``synapse.deserialize()``; otherwise the synapse with its status filled. With
        ``streaming`` (a :class:`StreamingSynapse`), each result is an async iterator
        of the chunks, ending with the final synapse. ``netuid=N`` instead of ``axons``
        calls every axon of subnet N in the local registry (:meth:`resolve`).
        """
        if axons is None:
            if netuid is None:
                raise TypeError("forward() needs axons or netuid")
            axons = self.resolve(netuid)
        synapse = synapse if synapse is not None else Synapse()
        single = not isinstance(axons, (list, tuple))
        targets: Sequence[Any] = [axons] if single else list(axons)
        if streaming:
            if not is_streaming(type(synapse)):
                raise ValueError(f"streaming=True needs a StreamingSynapse; {type(synapse).__name__} is not one")
            streams = [self.call_stream(t, synapse.model_copy(deep=True), timeout, deserialize) for t in targets]
            return streams[0] if single else streams
        calls = [self.call(t, synapse.model_copy(deep=True), timeout, deserialize) for t in targets]
        if run_async:
            results = list(await asyncio.gather(*calls))
        else:
            results = [await c for c in calls]
        return results[0] if single else results

    __call__ = forward

    @staticmethod
    def resolve(netuid: int, registry: Any = None) -> list[AxonInfo]:
        """The axons registered on ``netuid`` in ``registry`` (default: the local registry)."""
        if registry is None:
            from .registry import LocalRegistry

            registry = LocalRegistry()
        return list(registry.axons(netuid))

    def query(self, *args: Any, **kwargs: Any) -> Any:
        """Blocking ``forward`` for code without an event loop (or called from inside one)."""
        loop = self._ensure_sync_loop()
        return asyncio.run_coroutine_threadsafe(self.forward(*args, **kwargs), loop).result()

    async def call(self, target_axon: Any, synapse: S, timeout: float = 12.0, deserialize: bool = True) -> Any:
        """One signed call; every failure becomes a status on ``synapse.dendrite``.

        A streaming synapse is streamed and its chunks dropped: the final synapse is
        the result.
        """
        if is_streaming(type(synapse)):
            result: Any = None
            async for result in self.call_stream(target_axon, synapse, timeout, deserialize=False):
                pass
            return result.deserialize() if deserialize else result
        start = time.time()
        info = _target_info(target_axon)
        schema = schema_for(type(synapse))
        body, metadata = self._prepare(info, synapse, timeout, schema)
        method = self._channel(info).unary_unary(METHOD_PREFIX + type(synapse).__name__)
        try:
            call = method(body, metadata=metadata, timeout=timeout)
            response = await call
            self._fill(synapse, schema.from_bytes(response))
            status, message = self._status_of(synapse, await call.trailing_metadata())
        except grpc.aio.AioRpcError as e:
            self._read_axon(synapse, e.trailing_metadata())
            status, message = self._error_status(e, synapse, info, timeout)
        except ValueError as e:
            status, message = 422, f"Failed to parse response: {e}"
        self._finish(synapse, status, message, start)
        return synapse.deserialize() if deserialize else synapse

    async def call_stream(
        self, target_axon: Any, synapse: S, timeout: float = 12.0, deserialize: bool = True
    ) -> AsyncIterator[Any]:
        """Stream a :class:`StreamingSynapse`: yields each chunk, then the final synapse."""
        start = time.time()
        info = _target_info(target_axon)
        schema = schema_for(type(synapse))
        chunks = chunk_schema(type(synapse))  # type: ignore[arg-type]
        body, metadata = self._prepare(info, synapse, timeout, schema)
        method = self._channel(info).unary_stream(METHOD_PREFIX + type(synapse).__name__)
        call = method(body, metadata=metadata, timeout=timeout)
        try:
            async for message in call:
                tag, payload = unframe(message)
                if tag == CHUNK_TAG:
                    yield chunks.cls.model_validate(chunks.from_bytes(payload)).data  # type: ignore[attr-defined]
                else:
                    self._fill(synapse, schema.from_bytes(payload))
            status, message_text = self._status_of(synapse, await call.trailing_metadata())
        except grpc.aio.AioRpcError as e:
            self._read_axon(synapse, e.trailing_metadata())
            status, message_text = self._error_status(e, synapse, info, timeout)
        except ValueError as e:
            call.cancel()
            status, message_text = 422, f"Failed to parse response: {e}"
        finally:
            if not call.done():
                call.cancel()
        self._finish(synapse, status, message_text, start)
        yield synapse.deserialize() if deserialize else synapse

    async def aclose(self) -> None:
        """Close the channels opened on the running loop."""
        channels = self._channels.pop(asyncio.get_running_loop(), {})
        await asyncio.gather(*(c.close() for c in channels.values()))

    def close_session(self) -> None:
        """Close every channel and the private loop of ``query``."""
        loop, thread = self._sync_loop, self._sync_thread
        if loop is not None and thread is not None:
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            self._sync_loop = self._sync_thread = None

    async def __aenter__(self) -> Dendrite:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals ---------------------------------------------------------------------------
    def _prepare(
        self, info: AxonInfo, synapse: Synapse, timeout: float, schema: Any
    ) -> tuple[bytes, list[tuple[str, str]]]:
        synapse.timeout = timeout
        nonce = time.time_ns()
        hotkey = self.keypair.ss58_address
        synapse.dendrite = TerminalInfo(
            ip=self.external_ip, version=PROTOCOL_VERSION, nonce=nonce, uuid=self.uuid, hotkey=hotkey
        )
        synapse.axon = TerminalInfo(ip=info.ip, port=info.port, hotkey=info.hotkey)
        body = schema.to_bytes(synapse)
        if self.auth == "btauth":
            headers = btauth.sign_headers(
                self.keypair, method="POST", path=METHOD_PREFIX + type(synapse).__name__, body=body,
                receiver=info.hotkey, nonce=nonce, scheme=self.crypto,
            )
            synapse.dendrite.signature = headers[btauth.HEADER_SIGNATURE]
            return body, [("name", type(synapse).__name__), ("timeout", str(timeout)), *headers.items()]
        body_hash = grpc_body_hash(METHOD_PREFIX + type(synapse).__name__, body)
        message = f"{nonce}.{hotkey}.{info.hotkey}.{self.uuid}.{body_hash}"
        signature = "0x" + bytes(self.keypair.sign(message)).hex()
        synapse.dendrite.signature = signature
        metadata = [
            ("name", type(synapse).__name__),
            ("timeout", str(timeout)),
            ("computed_body_hash", body_hash),
            (DENDRITE_PREFIX + "hotkey", hotkey),
            (DENDRITE_PREFIX + "nonce", str(nonce)),
            (DENDRITE_PREFIX + "uuid", self.uuid),
            (DENDRITE_PREFIX + "version", str(PROTOCOL_VERSION)),
            (DENDRITE_PREFIX + "signature", signature),
            (DENDRITE_PREFIX + "ip", self.external_ip),
            (CRYPTO_HEADER, self.crypto),
        ]
        return body, metadata

    @staticmethod
    def _fill(synapse: Synapse, values: dict[str, Any]) -> None:
        """Copy the answer's fields into ``synapse``, skipping those it cannot set.

        As the SDK 10.5 dendrite does: a field declared ``frozen=True`` (or
        ``allow_mutation=False``) keeps the value the caller sent, and so does a
        ``required_hash_fields`` declared as a field; the rest of the answer is kept.
        """
        for key, value in values.items():
            try:
                setattr(synapse, key, value)
            except (AttributeError, TypeError, ValueError):  # pydantic's ValidationError is a ValueError
                continue

    def _status_of(self, synapse: Synapse, trailing: Any) -> tuple[int, str]:
        """The axon's status from its trailing metadata (200 Success when absent)."""
        self._read_axon(synapse, trailing)
        axon = synapse.axon
        if axon is not None and axon.status_code is not None:
            return axon.status_code, axon.status_message or "Success"
        return 200, "Success"

    @staticmethod
    def _finish(synapse: Synapse, status: int, message: str, start: float) -> None:
        d = synapse.dendrite
        assert d is not None
        d.__dict__.update(status_code=status, status_message=message, process_time=time.time() - start)

    @staticmethod
    def _read_axon(synapse: Synapse, trailing: Any) -> None:
        values = {
            key[len(AXON_PREFIX):]: value
            for key, value in (trailing or ())
            if key.startswith(AXON_PREFIX) and key[len(AXON_PREFIX):] in TerminalInfo.model_fields
        }
        if values:
            current = synapse.axon.model_dump() if synapse.axon is not None else {}
            try:
                synapse.axon = TerminalInfo(**{**current, **values})
            except ValueError:
                pass

    @staticmethod
    def _error_status(
        error: grpc.aio.AioRpcError, synapse: Synapse, info: AxonInfo, timeout: float
    ) -> tuple[int, str]:
        code = error.code()
        axon = synapse.axon
        if axon is not None and axon.status_code is not None:
            return axon.status_code, axon.status_message or (error.details() or "")
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return 408, f"Request timeout after {timeout} seconds"
        if code is grpc.StatusCode.UNAVAILABLE:
            return 503, f"Service at {info.ip_str()}/{type(synapse).__name__} unavailable."
        return http_status_for(code), error.details() or code.name

    def _channel(self, info: AxonInfo) -> grpc.aio.Channel:
        loop = asyncio.get_running_loop()
        channels = self._channels.setdefault(loop, {})
        address = info.ip_str()
        channel = channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
            channels[address] = channel
        return channel

    def _ensure_sync_loop(self) -> asyncio.AbstractEventLoop:
        if self._sync_loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="dendrite-loop", daemon=True)
            thread.start()
            self._sync_loop, self._sync_thread = loop, thread
        return self._sync_loop

    def __str__(self) -> str:
        return f"Dendrite({self.keypair.ss58_address})"

    __repr__ = __str__
