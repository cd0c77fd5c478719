"""The Axon: a miner's server, with Bittensor's API, served over gRPC.

``attach`` registers a forward (and optional blacklist, priority, verify) per synapse
class; ``start`` serves them on a ``grpc.aio`` server running on its own loop in a
background thread (``start_async`` serves on the caller's loop instead).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import uuid as uuid_lib
from typing import Any, Callable

from axon_grpc._types import BlacklistFn, ForwardFn, PriorityFn, VerifyFn, WalletLike
from axon_grpc.auth.legacy import PROTOCOL_VERSION, V_7_2_0, VerifyPolicy
from axon_grpc.auth.nonces import NonceStore
from axon_grpc.auth.sessions import SessionPolicy
from axon_grpc.auth.wallet import default_wallet
from axon_grpc.edge.config import EdgeLimits, TlsFiles
from axon_grpc.edge.proxy import EnvoyProxy
from axon_grpc.info import AxonInfo, advertised_address, ip_version
from axon_grpc.metrics.listener import MetricsListener
from axon_grpc.metrics.observer import PrometheusMetrics
from axon_grpc.schema import schema_for
from axon_grpc.server import config as config_mod
from axon_grpc.server import serving
from axon_grpc.server.compose import AxonSettings, TransportParts, compose
from axon_grpc.server.config import Config, data_dir
from axon_grpc.server.endpoints import VIEWS, ClassView, Endpoint, HookView
from axon_grpc.server.hooks import check_attach
from axon_grpc.server.loop_thread import LoopThread
from axon_grpc.server.serving import FromBridge, load_transport
from axon_grpc.synapse import Synapse
from axon_grpc.transports.grpc_aio import DEFAULT_MAX_METADATA_BYTES, DEFAULT_MAX_REQUEST_BYTES, GrpcServer

logger = logging.getLogger("axon_grpc")

__all__ = ["V_7_2_0", "Axon", "data_dir", "default_wallet"]


def _optional_port(value: Any) -> int | None:
    """A configured port: None when unset, else the number (0: any free port)."""
    return None if value is None or value == "" else int(value)


def _resolved_config(config: Config | None, given: dict[str, Any]) -> Config:
    """``config`` (default: the command line's defaults) with the settings ``given`` as
    arguments over its ``axon`` section; checked (``AssertionError``)."""
    config = Config(config) if config is not None else Axon.config(args=[])
    if "axon" not in config:
        config["axon"] = Axon.config(args=[]).axon
    section = config.axon = Config(config.axon)
    section.update({key: value for key, value in given.items() if value is not None})
    Axon.check_config(config)
    return config


def _ping(synapse: Synapse) -> Synapse:
    """Forward of the built-in ``Synapse`` route: answers the synapse as it came."""
    return synapse


class Axon:
    """A miner's server: attach synapse handlers, then ``start()``.

    Defaults are stricter than the legacy server: a valid signature is always
    required, ``verify_fn`` runs after (not instead of) the signature check,
    dendrites older than 7.2.0 are refused, and the nonce store is bounded.
    """

    def __init__(
        self,
        wallet: WalletLike | None = None,
        config: Config | None = None,
        port: int | None = None,
        ip: str | None = None,
        external_ip: str | None = None,
        external_port: int | None = None,
        max_workers: int | None = None,
        *,
        http_port: int | None = None,
        max_queue: int | None = None,
        nonce_store: NonceStore | str | None = None,
        verify_policy: VerifyPolicy | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
        reuse_port: bool = False,
        metrics: bool | PrometheusMetrics = True,
        metrics_port: int | None = None,
        metrics_hotkeys: int | None = None,
        sign_answers: bool = False,
        edge: bool | None = None,
        sessions: bool | SessionPolicy | None = None,
    ) -> None:
        given_settings = {
            "port": port, "ip": ip, "external_ip": external_ip, "external_port": external_port,
            "max_workers": max_workers, "http_port": http_port, "max_queue": max_queue,
            "nonce_store": nonce_store if isinstance(nonce_store, str) else None,
            "metrics_port": metrics_port, "metrics_hotkeys": metrics_hotkeys,
        }  # fmt: skip
        #: The configuration in force (the seed's attribute, beside the ``config()`` classmethod).
        self.config = config = _resolved_config(config, given_settings)  # type: ignore[method-assign,assignment]
        section = config.axon
        self._wallet = wallet
        self.ip: str = section.ip
        self.port: int = int(section.port)
        self._external_ip: str | None = section.get("external_ip") or None
        self.external_port: int = int(section.get("external_port") or self.port)
        self.max_workers: int = int(section.get("max_workers") or config_mod.DEFAULT_MAX_WORKERS)
        self.full_address = f"{self.ip}:{self.port}"
        self.uuid = str(uuid_lib.uuid1())
        self.version = PROTOCOL_VERSION
        self.started = False
        self.verify_policy = verify_policy or VerifyPolicy()
        #: Stores this axon opened from a URL (``nonce_store="redis://..."``); closed on stop.
        self.owned_stores: list[NonceStore] = []
        store = nonce_store if nonce_store is not None else section.get("nonce_store")
        #: A store URL, opened on first use (it is namespaced by the hotkey, read from disk).
        self._store_url: str | None = store if isinstance(store, str) else None
        self._store_timeout: float | None = section.get("nonce_store_timeout")
        self.max_request_bytes = max_request_bytes
        self.max_metadata_bytes = max_metadata_bytes
        self.reuse_port = reuse_port
        #: Further :class:`~axon_grpc.transports.grpc_aio.GrpcSettings` of the gRPC server, by field name
        #: (``max_concurrent_streams``, ``max_connections``, ``max_connection_idle_s``...).
        self.grpc_limits: dict[str, Any] = {}
        #: Callables ``(grpc.aio.Server) -> None`` adding services (health, reflection...).
        self.extra_services: list[Callable[[Any], None]] = []
        self.endpoints: dict[str, Endpoint] = {}
        if sessions is None:  # --axon.sessions / BT_AXON_SESSIONS, on by default
            sessions = str(section.get("sessions") or "on").lower() != "off"
        given = {"metrics": metrics, "sign_answers": sign_answers, "sessions": sessions}
        self._compose(section, store if isinstance(store, NonceStore) else None, given)
        self._servers(section, edge)
        self.attach(forward_fn=_ping)

    def _servers(self, section: Config, edge: bool | None) -> None:
        """What serves the request path: built or bound by ``start``, none yet."""
        #: Port of a listener answering only ``GET /metrics``; None: none of its own.
        #: 0 binds a port the system picks; ``start`` puts the bound port here.
        self.metrics_port: int | None = _optional_port(section.get("metrics_port"))
        self.metrics_listener = MetricsListener()
        #: The gRPC server, built by ``start`` from the settings in force then.
        self.grpc_server: GrpcServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The loop thread ``start()`` serves from; None when serving on the caller's loop.
        self._runner: LoopThread | None = None
        #: Port of the HTTP bridge for legacy dendrites; None serves gRPC only.
        #: None: no bridge; 0 binds a port the system picks, and ``start`` puts the bound port here.
        self.http_port: int | None = _optional_port(section.get("http_port"))
        self._http: Any = None
        #: ``start()`` publishes through a stock Envoy process (:mod:`axon_grpc.edge.proxy`):
        #: None follows ``$AXON_GRPC_EDGE`` (default on), False serves directly.
        self.edge = edge
        #: The edge's Envoy limits and TLS files (as ``axon-grpc serve --edge.* --tls-*``).
        self.edge_limits = EdgeLimits()
        self.edge_tls: TlsFiles | None = None
        #: The Envoy process publishing this axon while it serves through the edge, else None.
        self.proxy: EnvoyProxy | None = None

    def _compose(self, section: Config, store: NonceStore | None, given: dict[str, Any]) -> None:
        """The request path from the settings (and the ``given`` metrics, sign_answers, sessions
        arguments), by the composition root (:func:`compose`)."""
        queue_bound, hotkeys = section.get("max_queue"), section.get("metrics_hotkeys")
        settings = AxonSettings(
            max_workers=self.max_workers,
            max_queue=int(queue_bound) if queue_bound is not None else None,
            uuid=self.uuid,
            version=self.version,
            verify_policy=self.verify_policy,
            nonce_store=store,
            metrics_hotkeys=int(hotkeys) if hotkeys else None,
            **given,
        )
        own_verify = type(self).default_verify is not Axon.default_verify
        parts = compose(
            settings,
            self.endpoints,
            lambda: self.wallet.hotkey,
            lambda: (self.external_ip, self.external_port),
            extra_verify=self.default_verify if own_verify else None,
        )
        #: The threads of sync forwards; the admission queue decides what runs when.
        self.thread_pool = parts.thread_pool
        #: Admission in front of the forwards: ``max_workers`` running, a bounded priority queue.
        self.admission = parts.admission
        self.terminal = parts.terminal
        self.verifier = parts.verifier
        self.pipeline = parts.pipeline
        #: The axon's Prometheus metrics (:mod:`axon_grpc.metrics.observer`), or None with ``metrics=False``;
        #: ``axon.metrics.exposition()`` is what ``GET /metrics`` answers.
        self.metrics: PrometheusMetrics | None = parts.metrics
        #: The requests in flight on every transport, drained by ``stop``.
        self.drain = parts.drain
        #: The ``axon-session/1`` sessions this axon serves over gRPC (docs/SESSIONS.md), or None.
        self.sessions = parts.sessions
        #: The gRPC answers' format: announces the sessions when they are served (R24).
        self.grpc_codec = parts.grpc_codec
        self.forward_fns = HookView(self.endpoints, VIEWS["forward_fns"])
        self.blacklist_fns = HookView(self.endpoints, VIEWS["blacklist_fns"])
        self.priority_fns = HookView(self.endpoints, VIEWS["priority_fns"])
        self.verify_fns = HookView(self.endpoints, VIEWS["verify_fns"], fallback=self.default_verify)
        self.forward_class_types = ClassView(self.endpoints)

    # -- resolved on first use: no disk, DNS or entry-point work before it is needed --------------
    @property
    def wallet(self) -> WalletLike:
        """The wallet whose hotkey signs: the given one, else :func:`default_wallet`."""
        if self._wallet is None:
            self._wallet = default_wallet(self.config)  # type: ignore[arg-type]
        return self._wallet

    @property
    def external_ip(self) -> str:
        """The address this axon advertises (guessed from the bind address when not set)."""
        if self._external_ip is None:
            self._external_ip = advertised_address(self.ip)
        return self._external_ip

    @external_ip.setter
    def external_ip(self, value: str) -> None:
        self._external_ip = value

    @property
    def http(self) -> Any:
        """The HTTP transport (``bridge.HttpBridge``) when ``http_port`` is set or the axon
        serves through the Envoy edge (the legacy protocol on the public port), else None."""
        if self._http is None and (self.http_port is not None or self.proxy is not None):
            self._http = load_transport("http")(self.transport_parts())
            for endpoint in self.endpoints.values():
                self._http.add_route(endpoint)
        return self._http

    @property
    def http_bridge(self) -> Any:
        """The HTTP bridge once built (:attr:`http` builds it), else None."""
        return self._http

    def transport_parts(self, port: int | None = None) -> TransportParts:
        """What a transport registered apart (the HTTP bridge) is handed: the request path's
        collaborators, the bind address (``port``: default ``http_port``) and the limits."""
        return TransportParts(
            endpoints=self.endpoints,
            pipeline=self.pipeline,
            drain=self.drain,
            metrics=self.metrics,
            host=str(self.ip),
            port=int(self.http_port or 0) if port is None else port,
            max_request_bytes=self.max_request_bytes,
            reuse_port=self.reuse_port,
        )

    def _open_stores(self) -> None:
        """Open a store given by URL (namespaced by this axon's hotkey), once."""
        url, self._store_url = self._store_url, None
        if url is None:
            return
        from axon_grpc.auth.redis_store import open_nonce_store  # only an axon given a store URL loads the Redis client

        policy = self.verify_policy
        store = open_nonce_store(
            url,
            retention_ns=max(policy.retention_ns, policy.btauth_retention_ns),
            namespace=self.terminal.address,
            timeout_s=self._store_timeout,
        )
        if store is not None:  # the one change to a collaborator after construction: the store's
            # namespace is the hotkey, read from disk, so the URL is opened at first use, not in compose
            self.owned_stores.append(store)
            self.verifier.legacy_store = self.verifier.btauth_store = store

    @property
    def nonce_store(self) -> NonceStore:
        """Where legacy-scheme nonces are kept (shared with btauth when given or opened by URL)."""
        self._open_stores()
        return self.verifier.legacy_store

    @property
    def btauth_nonce_store(self) -> NonceStore:
        """Where btauth/1 nonces are kept."""
        self._open_stores()
        return self.verifier.btauth_store

    # -- the HTTP bridge's objects (seed API; None without an HTTP port) ---------------------
    app = FromBridge("The FastAPI application of the HTTP bridge.")
    router = FromBridge("The FastAPI router holding one route per attached synapse.")
    fast_config = FromBridge("The ``uvicorn.Config`` of the HTTP bridge.")
    fast_server = FromBridge("The ``FastAPIThreadedServer`` running the HTTP bridge.")
    middleware_cls = FromBridge("The ASGI middleware class of the HTTP bridge (``AxonMiddleware``).")

    async def verify_body_integrity(self, request: Any) -> dict[str, Any]:
        """Parse an HTTP request body and check it against its ``computed_body_hash`` header."""
        if self.http is None:
            raise RuntimeError("this axon has no HTTP bridge (set http_port)")
        return await self.http.verify_body_integrity(request)

    # -- configuration (seed API) ---------------------------------------------------------
    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser, prefix: str | None = None) -> None:
        """Add ``--axon.port/ip/external_ip/external_port/max_workers`` (``BT_AXON_*`` defaults)."""
        config_mod.add_args(parser, prefix)

    @classmethod
    def config(cls, args: list[str] | None = None) -> Config:
        """The configuration from command-line arguments (``sys.argv`` when ``args`` is None)."""
        return config_mod.parse_config(args)

    @classmethod
    def help(cls) -> None:
        """Print the command-line arguments and their descriptions."""
        parser = argparse.ArgumentParser()
        cls.add_args(parser)
        parser.print_help()

    @classmethod
    def check_config(cls, config: Config) -> None:
        """Assert the ports are in range; raises ``AssertionError``."""
        config_mod.check_config(config)

    @property
    def nonces(self) -> dict[str, Any]:
        """Accepted nonces per ``{hotkey}:{uuid}`` (in-memory store only)."""
        return getattr(self.nonce_store, "nonces", {})

    # -- attach -------------------------------------------------------------------------
    def attach(
        self,
        forward_fn: ForwardFn,
        blacklist_fn: BlacklistFn | None = None,
        priority_fn: PriorityFn | None = None,
        verify_fn: VerifyFn | None = None,
        *,
        inline: bool = False,
    ) -> Axon:
        """Serve ``forward_fn``'s synapse type; returns ``self`` for chaining.

        ``inline=True`` runs a sync ``forward_fn`` on the event loop instead of the
        thread pool (no thread hop): only for forwards known to be fast and never
        blocking. Raises ``AssertionError`` when a function's signature does not fit,
        and :class:`~axon_grpc.errors.SchemaError` when a field has no protobuf mapping.
        """
        cls = check_attach(forward_fn, blacklist_fn, priority_fn, verify_fn)
        name = cls.__name__
        endpoint = Endpoint(
            name=name,
            synapse_class=cls,
            schema=schema_for(cls),
            forward_fn=forward_fn,
            blacklist_fn=blacklist_fn,
            priority_fn=priority_fn,
            verify_fn=verify_fn,
            inline=inline,
        )
        self.endpoints[name] = endpoint
        self.pipeline.observer.attached(name)
        if self._http is not None:
            self._http.add_route(endpoint)
        return self

    async def default_verify(self, synapse: Synapse, crypto: str = "sr25519") -> None:
        """Check the signature and the nonce of a header-built synapse (legacy scheme).

        Raises :class:`~axon_grpc.errors.NotVerifiedException` with the reason; the
        nonce is stored only when the signature verified. The pipeline always runs this
        check itself; a subclass that overrides ``default_verify`` adds its own check,
        run after the signature was verified (with the synapse built from the signed
        body), never instead of it.
        """
        self._open_stores()
        await self.verifier.verify_legacy(synapse, crypto)

    # -- lifecycle ----------------------------------------------------------------------
    def prepare(self) -> Axon:
        """Resolve what serving needs (the wallet's hotkey, the advertised address, a store
        given by URL) now rather than on the first request. ``start`` calls it; a server
        that runs the pipeline itself (the Envoy edge) calls it instead of ``start``."""
        self._open_stores()
        self.terminal.endpoint  # noqa: B018 - resolves the hotkey and the address
        return self

    async def start_async(self, edge: bool | None = None) -> Axon:
        """Serve on the running loop (for callers already inside asyncio).

        ``edge``: publish through Envoy (True), directly (False), or as ``self.edge`` and
        ``$AXON_GRPC_EDGE`` say (None; the default is through Envoy where it is installed).
        How: :func:`axon_grpc.server.serving.publish`.
        """
        if self.started:
            return self
        await serving.publish(self, edge)
        self._loop = asyncio.get_running_loop()
        self.started = True
        return self

    def bound(self, port: int) -> None:
        """The gRPC port bound (the one asked for, or the system's pick for port 0): an external
        port that followed the bind port (0) follows it to the bound one."""
        if self.external_port == 0:
            self.external_port = port
            self.terminal.readdress()
        self.port = port
        self.full_address = f"{self.ip}:{port}"

    async def stop_async(self, grace: float | None = 5.0) -> Axon:
        """Stop serving; calls in flight get ``grace`` seconds to finish.

        At once: health NOT_SERVING, and neither gRPC nor the HTTP bridge takes new work.
        Both drain together; what still runs after ``grace`` is answered 503 ``Service
        unavailable: shutting down``, and the stop returns right after.
        How: :func:`axon_grpc.server.serving.withdraw`.
        """
        await serving.withdraw(self, grace)
        self.started = False
        return self

    def start(self, edge: bool | None = None) -> Axon:
        """Serve in a background thread with its own event loop; returns once bound.

        ``edge`` as for :meth:`start_async`: by default the public port is Envoy's."""
        if self.started:
            return self
        runner = LoopThread(f"axon-{self.port}")
        try:
            runner.run(self.start_async(edge), timeout=60)
        except BaseException:
            runner.close()
            raise
        self._runner = runner
        return self

    def stop(self, grace: float | None = 5.0) -> Axon:
        """Stop serving (from any thread but the axon's own loop) and wait until stopped."""
        if self._loop is None:
            return self
        runner = self._runner
        if runner is None:
            raise RuntimeError("this axon runs on your event loop: use 'await axon.stop_async()'")
        try:
            runner.run(self.stop_async(grace), timeout=(grace or 0) + 30)
        finally:
            runner.close()
            self._loop = self._runner = None
        return self

    def __enter__(self) -> Axon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Axon:
        return await self.start_async()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    # -- identity -------------------------------------------------------------------------
    def serve(self, netuid: int, subtensor: Any = None, certificate: Any = None) -> Axon:
        """Register this axon on subnet ``netuid`` through ``subtensor.serve_axon``.

        Without a subtensor, the axon is recorded in the local registry
        (:class:`~axon_grpc.registry.LocalRegistry`), where ``Dendrite`` and
        ``axon-grpc call --netuid N`` find it.
        """
        if subtensor is None:
            from axon_grpc.registry import LocalRegistry

            subtensor = LocalRegistry()
            logger.info("serve(netuid=%s): recording this axon in the local registry %s", netuid, subtensor.path)
        subtensor.serve_axon(netuid=netuid, axon=self, certificate=certificate)
        return self

    def info(self) -> AxonInfo:
        """The AxonInfo this axon advertises."""
        coldkeypub = getattr(self.wallet, "coldkeypub", None)
        return AxonInfo(
            version=self.version,
            ip=self.external_ip,
            port=self.external_port,
            ip_type=ip_version(self.external_ip),
            hotkey=self.wallet.hotkey.ss58_address,
            coldkey=getattr(coldkeypub, "ss58_address", "") or "",
        )

    def to_string(self) -> str:
        """A readable one-line description of the advertised AxonInfo."""
        return self.info().to_string()

    def __str__(self) -> str:
        return (
            f"Axon({self.ip}, {self.port}, {self.wallet.hotkey.ss58_address}, "
            f"{'started' if self.started else 'stopped'}, {list(self.endpoints)})"
        )

    __repr__ = __str__
