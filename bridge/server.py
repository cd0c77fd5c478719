"""``FastAPIThreadedServer``: uvicorn without signal handlers, in a thread or in a loop.

The seed's API (``start``/``stop`` in its own thread, ``run_in_thread``,
``is_running``, ``should_exit``) is kept; the bridge uses :meth:`serve_in_loop`
so uvicorn shares the axon's event loop with the gRPC server and the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import Any, Iterator

import uvicorn
from uvicorn.server import ServerState

from axon_grpc.edge.config import connection_budget
from axon_grpc.server.drain import ANSWER_S

from .protocols import DEFAULT_HEAD_TIMEOUT_S, best_http, protocol_class

logger = logging.getLogger("axon_grpc.bridge")

#: How long ``start()`` (thread mode) waits for the server to listen.
START_TIMEOUT_S = 30.0


class _CutStreams(logging.Filter):
    """Drops uvicorn's error line for a response the bridge cut on purpose (a stream whose
    client stopped reading, at its deadline): one per stalled client, it is no server fault."""

    MESSAGE = "ASGI callable returned without completing response."

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != self.MESSAGE


def _quiet_cut_streams() -> None:
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _CutStreams) for f in uvicorn_errors.filters):
        uvicorn_errors.addFilter(_CutStreams())


#: Edge limits of the bridge's uvicorn (library mode; ``axon-grpc serve`` has Envoy's).
DEFAULT_LIMIT_CONCURRENCY = 1024  #: connections plus requests at once; more are answered 503
DEFAULT_KEEP_ALIVE_S = 5  #: an idle kept-alive connection is closed after this


def make_config(
    app: Any,
    host: str,
    port: int,
    *,
    max_header_bytes: int,
    limit_concurrency: int = DEFAULT_LIMIT_CONCURRENCY,
    timeout_keep_alive: int = DEFAULT_KEEP_ALIVE_S,
    head_timeout_s: float = DEFAULT_HEAD_TIMEOUT_S,
) -> uvicorn.Config:
    """The ``uvicorn.Config`` of the bridge: quiet, no lifespan, no proxy-header trust, and
    the edge limits uvicorn allows (a head read limit added: ``head_timeout_s``)."""
    _quiet_cut_streams()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",  # served in the axon's loop; thread mode gets a plain asyncio loop
        http=protocol_class(best_http()),
        lifespan="off",
        log_level="warning",
        log_config=None,  # leave the process's logging configuration alone
        access_log=False,
        proxy_headers=False,  # the peer address is the socket's, never a client's claim
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=timeout_keep_alive,
        # h11 refuses headers past this on its own; keep it above the bridge's 431 bound.
        h11_max_incomplete_event_size=head_max_bytes(max_header_bytes),
    )
    # Read by the protocol (bridge/protocols.py).
    config.head_timeout_s = head_timeout_s  # type: ignore[attr-defined]
    config.head_max_bytes = head_max_bytes(max_header_bytes)  # type: ignore[attr-defined]
    config.max_connections = connection_budget(limit_concurrency, servers=2)  # type: ignore[attr-defined]
    return config


def head_max_bytes(max_header_bytes: int) -> int:
    """Bytes of a request head (request line, target and headers) accepted before it is
    complete: the bridge's 431 bound on the headers plus 16 KiB for the rest."""
    return max_header_bytes + 16 * 1024


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening-ready TCP socket on ``host:port``; ``[::]``/``::`` is every interface.

    Raises :class:`OSError` naming the address when it cannot be bound.
    """
    host = host.strip("[]")
    if host in ("", "::"):
        candidates: list[tuple[int, tuple[Any, ...]]] = [
            (socket.AF_INET6, ("::", port)),
            (socket.AF_INET, ("0.0.0.0", port)),  # hosts without IPv6
        ]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as e:
            raise OSError(f"cannot bind the HTTP bridge to {host}:{port}: {e}") from None
        candidates = [(family, address) for family, _, _, _, address in infos[:1]]
    error: OSError | None = None
    for family, address in candidates:
        try:
            # IPPROTO_TCP, not 0: asyncio turns TCP_NODELAY on only for sockets that say
            # TCP, and without it Nagle holds each small response until the peer's
            # delayed ACK (about 40 ms per request).
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        except OSError as e:  # e.g. no IPv6 on this host: fall back to IPv4
            error = e
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and address[0] == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 clients too
            sock.bind(address)
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot bind the HTTP bridge to {host or '::'}:{port}: {e.strerror}") from None
        return sock
    raise OSError(f"cannot bind the HTTP bridge to {host or '::'}:{port}: {error}")


class FastAPIThreadedServer(uvicorn.Server):
    """A uvicorn server that never installs signal handlers.

    ``start()``/``stop()`` run it in its own thread (the seed's way);
    :meth:`serve_in_loop`/:meth:`shutdown_in_loop` run it on the caller's loop.
    """

    should_exit: bool = False
    is_running: bool = False

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    def install_signal_handlers(self) -> None:
        """Do nothing: signals belong to the application embedding the axon."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Do nothing (uvicorn would take SIGINT/SIGTERM from the main thread)."""
        yield

    def _reset(self) -> None:
        self.server_state = ServerState()
        self.started = self.should_exit = self.force_exit = False

    # -- in its own thread (seed API) -------------------------------------------------------
    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[None]:
        """Run the server in a background thread while the block runs."""
        thread = threading.Thread(target=self.run, name="axon-http", daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not self.started and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(1e-3)
            if not self.started:
                raise OSError(f"the HTTP server did not start on {self.config.host}:{self.config.port}")
            yield
        finally:
            self.should_exit = True
            thread.join()

    def _wrapper_run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        try:
            with self.run_in_thread():
                ready.set()
                while not self.should_exit:
                    time.sleep(1e-3)
        except BaseException as e:  # reported to start()
            failure.append(e)
        finally:
            ready.set()

    def start(self) -> None:
        """Start serving in a new thread (no-op if running); returns once it listens."""
        if self.is_running:
            return
        self._reset()
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._wrapper_run, args=(ready, failure), daemon=True)
        self._thread.start()
        ready.wait(START_TIMEOUT_S + 1)
        if failure:
            self._thread.join()
            raise failure[0]
        self.is_running = True

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread (no-op if not running)."""
        if not self.is_running:
            return
        self.should_exit = True
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=START_TIMEOUT_S)
        self.is_running = False

    # -- on the running loop (the bridge's way) ----------------------------------------------
    async def serve_in_loop(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve on the running loop; returns once listening, else raises :class:`OSError`."""
        if self.is_running:
            return
        self._reset()
        task = asyncio.get_running_loop().create_task(self._serve_no_exit(sockets), name="axon-http")
        self._task = task
        while not self.started:
            if task.done():
                self._task = None
                error = task.exception()
                where = f"{self.config.host}:{self.config.port}"
                raise OSError(f"the HTTP bridge could not start on {where}: {error or 'it exited'}")
            await asyncio.wait({task}, timeout=0.005)
        self.is_running = True

    async def _serve_no_exit(self, sockets: list[socket.socket] | None) -> None:
        try:
            await self.serve(sockets)
        except SystemExit as e:  # uvicorn exits the process on startup failures
            raise OSError(f"uvicorn gave up starting (exit status {e.code})") from None

    async def shutdown_in_loop(self, grace: float | None) -> None:
        """Stop accepting, give calls in flight ``grace`` seconds (None: none), then return."""
        task, self._task = self._task, None
        if task is None:
            return
        for listening in getattr(self, "servers", ()):  # no new connections from now on, not at the next tick
            listening.close()
        # The axon's drain answers what is still running at the grace (503); uvicorn's own
        # cut (a plain-text 500 and an error line) comes only after that.
        self.config.timeout_graceful_shutdown = None if grace is None else grace + ANSWER_S  # type: ignore[assignment]
        if grace is None:
            self.force_exit = True
            for pending in list(self.server_state.tasks):
                pending.cancel()
        self.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=(grace or 0.0) + 10.0)
        except asyncio.TimeoutError:
            logger.warning("the HTTP bridge did not stop in time; cancelling it")
            task.cancel()
        finally:
            self.is_running = False
