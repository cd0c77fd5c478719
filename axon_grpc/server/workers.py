"""Several axon processes on one port: spawned workers sharing it with SO_REUSEPORT.

Each worker imports the application, calls its factory (which returns an unstarted
:class:`~axon_grpc.server.axon.Axon`), sets ``reuse_port`` so the gRPC port (and the HTTP
bridge's, when configured) is shared, serves until SIGTERM, then stops gracefully.
The kernel spreads new connections over the workers. Replay protection must then hold
across processes, so with more than one worker an in-memory nonce store is refused::

    axon-grpc serve my_app:build_axon --workers 4 --axon.nonce_store redis://127.0.0.1:6379/0

From Python (the factory is ``"module:attribute"`` or a module-level function)::

    from axon_grpc import workers
    raise SystemExit(workers.serve("my_app:build_axon", workers=4))

    with workers.WorkerGroup("my_app:build_axon", workers=2) as group:   # for scripts
        print(group.pids)                                               # all serving here
"""

from __future__ import annotations

import asyncio
import glob
import importlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Callable, Union

from axon_grpc import logs
from axon_grpc.auth.nonces import InMemoryNonceStore
from axon_grpc.metrics.listener import serve_aggregate
from axon_grpc.metrics.observer import MULTIPROC_ENV

if TYPE_CHECKING:  # pragma: no cover
    from multiprocessing.process import BaseProcess

    from axon_grpc.server.axon import Axon

logger = logging.getLogger("axon_grpc")

#: ``"module:attribute"`` naming a function that returns an unstarted Axon, or the function.
Factory = Union[str, Callable[[], "Axon"]]

#: Exit status when the command is refused as configured (as argparse uses).
EXIT_USAGE = 2
#: The variables giving the workers their gRPC and HTTP bridge ports (0: the first worker's pick).
PORT_ENVS = ("BT_AXON_PORT", "BT_AXON_HTTP_PORT")

SHARED_STORE_HINT = (
    "--workers {n} needs a nonce store shared by the workers: with the in-memory store each worker "
    "remembers only its own nonces, so a request replayed to another worker would be accepted. "
    "Pass --axon.nonce_store redis://HOST:PORT/DB (or set BT_AXON_NONCE_STORE, or build the axon "
    "with Axon(nonce_store='redis://...'))."
)


class SharedStoreRequired(ValueError):
    """Several workers were asked for, but the axon's nonce store is per process."""


class WorkerFailed(RuntimeError):
    """A worker could not start, or died while serving."""


def load_factory(factory: Factory) -> Callable[[], Axon]:
    """The callable a ``"module:attribute"`` string names (a callable is returned as is)."""
    if callable(factory):
        return factory
    module_name, sep, attribute = str(factory).partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected MODULE:FUNCTION (like my_app:build_axon), got {factory!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{factory} is not callable")
    return target  # type: ignore[no-any-return]


def build(factory: Factory) -> Axon:
    """Call the factory and check that it returned an unstarted Axon."""
    from axon_grpc.server.axon import Axon

    axon = load_factory(factory)()
    if not isinstance(axon, Axon):
        raise TypeError(f"the factory returned {type(axon).__name__}, not an Axon")
    if axon.started:
        raise ValueError("the factory must return an unstarted Axon (the worker starts it)")
    return axon


def require_shared_store(axon: Axon, workers: int) -> None:
    """Raise :class:`SharedStoreRequired` when ``axon`` keeps its nonces in this process."""
    if workers > 1 and any(isinstance(s, InMemoryNonceStore) for s in (axon.nonce_store, axon.btauth_nonce_store)):
        raise SharedStoreRequired(SHARED_STORE_HINT.format(n=workers))


async def _close_stores(axon: Axon) -> None:
    """Close the axon's shared stores (the worker owns everything in its process)."""
    seen: set[int] = set()
    for store in (axon.nonce_store, axon.btauth_nonce_store):
        if id(store) in seen or isinstance(store, InMemoryNonceStore) or store in axon.owned_stores:
            continue
        seen.add(id(store))
        await store.close()


async def serve_until_signal(
    axon: Axon,
    grace: float | None = 5.0,
    on_ready: Callable[[Axon], None] | None = None,
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Start ``axon`` on the running loop, serve until one of ``signals``, then stop it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await axon.start_async(edge=False)  # the grpcio server of `serve --server grpcio`: no Envoy
        try:
            if on_ready is not None:
                on_ready(axon)
            await stop.wait()
        finally:
            await axon.stop_async(grace)
            await _close_stores(axon)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _worker_main(
    factory: Factory, workers: int, grace: float | None, log_level: str | None, report: Connection
) -> None:
    """Body of one spawned worker: build, check, serve until SIGTERM; reports to the parent."""
    # Ctrl-C reaches the whole process group; the parent turns it into one SIGTERM per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_level:
        logs.configure(log_level, os.environ.get(logs.FORMAT_ENV) or "text", process=True)
    try:
        axon = build(factory)
        require_shared_store(axon, workers)
        axon.reuse_port = True
        if axon.metrics is not None and workers > 1:
            axon.metrics.set_mode("workers")
            axon.metrics_port = None  # the parent answers the metrics port for all workers
    except SharedStoreRequired as e:
        report.send(("refused", str(e)))
        sys.exit(EXIT_USAGE)
    except BaseException as e:
        logger.exception("worker %s could not build its axon", os.getpid())
        report.send(("failed", f"{type(e).__name__}: {e}"))
        sys.exit(1)

    def ready(started: Axon) -> None:
        report.send(("ready", os.getpid(), started.port, started.http_port, startup_lines(started)))

    try:
        asyncio.run(serve_until_signal(axon, grace, ready, signals=(signal.SIGTERM,)))
    except BaseException as e:
        logger.exception("worker %s failed", os.getpid())
        try:
            report.send(("failed", f"{type(e).__name__}: {e}"))
        except OSError:
            pass
        sys.exit(1)


class WorkerGroup:
    """N spawned worker processes serving one axon factory on one shared port.

    :meth:`start` returns once every worker serves (raising :class:`SharedStoreRequired`
    or :class:`WorkerFailed` otherwise); :meth:`stop` sends SIGTERM and waits.
    """

    def __init__(
        self,
        factory: Factory,
        workers: int = 2,
        *,
        grace: float | None = 5.0,
        log_level: str | None = None,
        start_timeout: float | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.factory = factory
        self.workers = workers
        self.grace = grace
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.processes: list[BaseProcess] = []
        self.pids: list[int] = []
        self.port: int | None = None
        #: The HTTP bridge's shared port (None without a bridge).
        self.http_port: int | None = None
        #: What a worker serves (:func:`startup_lines`), as the first one to start reported it.
        self.startup: list[str] = []
        self._reports: list[Connection] = []
        #: The multiprocess metrics directory this group made (removed on stop).
        self._metrics_dir: str | None = None

    def _share_metrics(self) -> None:
        """Several workers write their metrics to one directory, so any of them shows all
        (prometheus_client's multiprocess mode; the workers inherit the variable)."""
        if self.workers < 2:
            return
        existing = os.environ.get(MULTIPROC_ENV)
        if existing:
            for stale in glob.glob(os.path.join(existing, "*.db")):
                os.remove(stale)
            return
        self._metrics_dir = tempfile.mkdtemp(prefix="axon-metrics-")
        os.environ[MULTIPROC_ENV] = self._metrics_dir

    def start(self) -> list[int]:
        """Spawn the workers; returns their pids once all serve.

        With ``BT_AXON_PORT`` (or ``BT_AXON_HTTP_PORT``) 0, the first worker binds a port the
        system picks and the others join it there, so no port is chosen before it is bound.
        """
        self._share_metrics()
        picked: dict[str, str | None] = {name: None for name in PORT_ENVS if os.environ.get(name) == "0"}
        try:
            self._spawn(0 if picked else self.workers)
            if picked:
                self._spawn(1)
                self._await_ready()
                picked = {name: os.environ.get(name) for name in picked}
                os.environ[PORT_ENVS[0]], http = str(self.port), self.http_port
                if http is not None:
                    os.environ[PORT_ENVS[1]] = str(http)
                self._spawn(self.workers - 1)
            self._await_ready()
        except BaseException:
            self.stop()
            raise
        finally:
            for name, value in picked.items():
                if value is not None:
                    os.environ[name] = value
        return self.pids

    def _spawn(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        for _ in range(count):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_main,
                name=f"axon-worker-{len(self.processes)}",
                args=(self.factory, self.workers, self.grace, self.log_level, sender),
            )
            process.start()
            sender.close()
            self.processes.append(process)
            self._reports.append(receiver)

    def _await_ready(self) -> None:
        deadline = None if self.start_timeout is None else time.monotonic() + self.start_timeout
        waiting = {r: p for r, p in zip(self._reports, self.processes) if p.pid not in self.pids}
        while waiting:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if timeout == 0.0:
                raise WorkerFailed(f"workers did not start within {self.start_timeout} s")
            for ready in wait(list(waiting), timeout=timeout):
                assert isinstance(ready, Connection)
                try:
                    message = ready.recv()
                except EOFError:
                    process = waiting.pop(ready)
                    process.join(5)
                    raise WorkerFailed(
                        f"worker {process.pid} exited with status {process.exitcode} while starting"
                    ) from None
                if message[0] == "refused":
                    raise SharedStoreRequired(message[1])
                if message[0] == "failed":
                    raise WorkerFailed(f"a worker could not start: {message[1]}")
                waiting.pop(ready)
                self.pids.append(int(message[1]))
                self.port = int(message[2])
                self.http_port = None if message[3] is None else int(message[3])
                self.startup = list(message[4])

    def failed(self) -> BaseProcess | None:
        """A worker that exited on its own (None while all serve)."""
        return next((p for p in self.processes if p.exitcode is not None), None)

    def wait(self, stop: threading.Event | None = None, poll_s: float = 0.2) -> BaseProcess | None:
        """Block until ``stop`` is set (returns None) or a worker exits (returns it)."""
        by_sentinel = {p.sentinel: p for p in self.processes}
        while stop is None or not stop.is_set():
            ready = wait(list(by_sentinel), timeout=poll_s)
            if ready:
                # The sentinel closes a moment before the exit status can be collected.
                process = by_sentinel[ready[0]]  # type: ignore[index]
                process.join(5)
                return process
        return None

    def stop(self, timeout: float | None = None) -> list[int | None]:
        """SIGTERM every worker, wait (then kill stragglers); returns the exit codes."""
        for process in self.processes:
            if process.exitcode is None and process.pid is not None:
                process.terminate()
        limit = (self.grace or 0.0) + 10.0 if timeout is None else timeout
        deadline = time.monotonic() + limit
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                logger.warning("worker %s did not stop within %.0f s; killing it", process.pid, limit)
                process.kill()
                process.join(5)
        for report in self._reports:
            report.close()
        self._reports = []
        made, self._metrics_dir = self._metrics_dir, None
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
            if os.environ.get(MULTIPROC_ENV) == made:
                del os.environ[MULTIPROC_ENV]
        return [p.exitcode for p in self.processes]

    def __enter__(self) -> WorkerGroup:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def startup_lines(axon: Axon) -> list[str]:
    """What a started axon serves, for the operator and for clients: hotkey, ports, protocols.

    The hotkey is part of every signed request, so a client needs it; it also reads it
    from ``axon.info()``, the registry, or the trailers of any answer of the ping method.
    """
    hotkey = axon.wallet.hotkey
    crypto = getattr(hotkey, "crypto_type", "sr25519")
    if isinstance(crypto, int):  # Bittensor keypairs number their crypto types
        crypto = "ed25519" if crypto == 0 else "sr25519"
    names = ", ".join(axon.endpoints)
    lines = [
        f"hotkey {hotkey.ss58_address} ({crypto})",
        f"gRPC (HTTP/2, h2c) on {axon.ip}:{axon.port}: axon.v1.Axon/{{{names}}}, reflection, health",
    ]
    if axon.http_port is not None:
        lines.append(
            f"HTTP/1.1 legacy bridge (SDK 7.2-10.5 dendrites) on {axon.ip}:{axon.http_port}: POST /{{{names}}}"
        )
    try:
        info = axon.info()
        lines.append(f"advertises {info.ip_str()} (axon.info(), registered by axon.serve(netuid))")
    except ValueError as e:
        lines.append(f"advertises nothing valid: {e}")
    return lines


def serve(
    factory: Factory,
    workers: int = 1,
    *,
    grace: float | None = 5.0,
    log_level: str | None = None,
    out: Callable[[str], Any] | None = None,
) -> int:
    """Serve the factory's axon with ``workers`` processes until SIGTERM/SIGINT; the exit status.

    ``workers=1`` serves in this process. More spawn that many workers on the shared
    port; this process forwards SIGTERM/SIGINT to them and waits. Returns 0 after a
    clean stop, 1 when a worker failed or died. Raises :class:`SharedStoreRequired`
    (before serving anything) when the axon's nonce store is in-memory.
    """
    say = out or (lambda line: print(line, file=sys.stderr, flush=True))
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if workers == 1:
        axon = build(factory)

        def ready_one(started: Axon) -> None:
            say(f"axon-grpc: serving {list(started.endpoints)} on {started.ip}:{started.port} (pid {os.getpid()})")
            for line in startup_lines(started):
                say(f"axon-grpc: {line}")

        asyncio.run(serve_until_signal(axon, grace, ready_one))
        return 0

    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    except ValueError:  # not the main thread: the caller handles signals
        pass
    group = WorkerGroup(factory, workers, grace=grace, log_level=log_level)
    try:
        try:
            group.start()
        except WorkerFailed as e:
            say(f"axon-grpc: {e}")
            return 1
        say(f"axon-grpc: {workers} workers (pids {', '.join(map(str, group.pids))}) serving on port {group.port}")
        for line in group.startup:
            say(f"axon-grpc: {line}")
        metrics_port = os.environ.get("BT_AXON_METRICS_PORT")
        metrics_server = None
        if metrics_port:
            metrics_server, _ = serve_aggregate(int(metrics_port), os.environ.get("BT_AXON_IP") or "::")
            say(f"axon-grpc: GET /metrics of all {workers} workers on port {metrics_server.server_port}")
        try:
            dead = group.wait(stop)
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
        if dead is not None:
            say(f"axon-grpc: worker {dead.pid} exited with status {dead.exitcode}; stopping the others")
        codes = group.stop()
        return 1 if dead is not None or any(code not in (0, None) for code in codes) else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = [
    "EXIT_USAGE",
    "Factory",
    "SharedStoreRequired",
    "WorkerFailed",
    "WorkerGroup",
    "build",
    "load_factory",
    "require_shared_store",
    "serve",
    "serve_until_signal",
    "startup_lines",
]
