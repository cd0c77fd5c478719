"""The composition root: an Axon's collaborators, built in one place from its settings.

:func:`compose` builds the request path bottom-up (the sync forwards' threads, admission,
the axon's terminal info, the signature verifier, the forwarder, the metrics, the
pipeline) and hands each collaborator what it needs at construction: nothing is set on
one afterwards. The :class:`~axon_grpc.server.axon.Axon` keeps the result as its
attributes (``axon.pipeline``, ``axon.admission``...), the names of the seed's API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from axon_grpc.auth.legacy import VerifyPolicy
from axon_grpc.auth.nonces import InMemoryNonceStore, NonceStore
from axon_grpc.auth.session_wire import ANNOUNCE_TRAILER
from axon_grpc.auth.session_wire import VERSION as SESSION_VERSION
from axon_grpc.auth.sessions import SessionPolicy, Sessions
from axon_grpc.auth.verifier import Verifier
from axon_grpc.metrics.observer import NULL_OBSERVER, Observer, PrometheusMetrics
from axon_grpc.metrics.sessions import SessionMetrics
from axon_grpc.server.admission import AdmissionQueue
from axon_grpc.server.drain import Drain
from axon_grpc.server.endpoints import Endpoint
from axon_grpc.server.executor import ForwardPool
from axon_grpc.server.forwarding import Forwarder
from axon_grpc.server.pipeline import Pipeline
from axon_grpc.server.terminal import AxonTerminal
from axon_grpc.synapse import Synapse
from axon_grpc.transports.grpc_codec import GRPC_CODEC, GrpcCodec


@dataclass
class AxonSettings:
    """What the collaborators are built from (an Axon's resolved configuration)."""

    max_workers: int
    #: Requests waiting for a worker slot at most; None: 8 x ``max_workers``.
    max_queue: int | None
    uuid: str
    version: int
    verify_policy: VerifyPolicy
    #: The nonce store given (used for both schemes), or None: in-memory stores.
    nonce_store: NonceStore | None = None
    #: True: Prometheus metrics of the axon's own; a PrometheusMetrics: those; False: none.
    metrics: bool | PrometheusMetrics = True
    metrics_hotkeys: int | None = None
    sign_answers: bool = False
    #: Serve ``axon-session/1`` (True: with the default bounds; a policy: with those; False: not).
    sessions: bool | SessionPolicy = True


@dataclass
class Collaborators:
    """An Axon's request path, built by :func:`compose`."""

    thread_pool: ForwardPool
    admission: AdmissionQueue
    terminal: AxonTerminal
    verifier: Verifier
    pipeline: Pipeline
    metrics: PrometheusMetrics | None
    #: The requests in flight on every transport, drained on stop.
    drain: Drain
    #: The sessions this axon serves (``axon-session/1``), or None.
    sessions: Sessions | None = None
    #: The gRPC answers' format: with the ``axon-sessions`` announcement when sessions are served.
    grpc_codec: GrpcCodec = GRPC_CODEC


@dataclass(frozen=True)
class TransportParts:
    """What a transport of an axon (the HTTP bridge) is handed: its collaborators and where
    to serve, never the Axon itself."""

    endpoints: Mapping[str, Endpoint]
    pipeline: Pipeline
    #: The requests in flight, shared by every transport: the axon's stop drains them all.
    drain: Drain
    #: What ``GET /metrics`` answers (``exposition()``); None: no such route.
    metrics: PrometheusMetrics | None
    host: str
    #: The port to bind; 0: any (a transport served by another listener binds none).
    port: int
    max_request_bytes: int
    reuse_port: bool = False


def _metrics(settings: AxonSettings, admission: AdmissionQueue) -> PrometheusMetrics | None:
    given = settings.metrics
    if given is True:
        return PrometheusMetrics(hotkeys=settings.metrics_hotkeys or None, admission=admission)
    if isinstance(given, PrometheusMetrics):
        if given.admission is None:  # metrics built by the embedder: they read this axon's queue
            given.admission = admission
        return given
    return None


def compose(
    settings: AxonSettings,
    endpoints: dict[str, Endpoint],
    hotkey: Callable[[], Any],
    address: Callable[[], tuple[str, int]],
    extra_verify: Callable[[Synapse], Any] | None = None,
) -> Collaborators:
    """The collaborators of an axon serving ``endpoints``.

    ``hotkey`` and ``address`` are read when first needed (the wallet's hotkey, the
    advertised ip and port: no disk or network work here); ``extra_verify`` is an Axon
    subclass's own ``default_verify``, run after the signature check.
    """
    thread_pool = ForwardPool(settings.max_workers)
    queue = settings.max_queue if settings.max_queue is not None else 8 * settings.max_workers
    admission = AdmissionQueue(settings.max_workers, int(queue))
    metrics = _metrics(settings, admission)
    observer: Observer = metrics if metrics is not None else NULL_OBSERVER
    terminal = AxonTerminal(hotkey, settings.uuid, settings.version, address, settings.sign_answers)
    policy, store = settings.verify_policy, settings.nonce_store
    sessions = None
    if settings.sessions is not False:
        sessions = Sessions(
            lambda: terminal.hotkey,
            lambda: verifier.replay_store(),  # the verifier's store when the open is checked (a URL opens late)
            settings.sessions if isinstance(settings.sessions, SessionPolicy) else None,
            metrics=SessionMetrics.of(metrics.registry) if metrics is not None else None,
        )
    verifier = Verifier(
        lambda: terminal.address,
        store if store is not None else InMemoryNonceStore(policy.retention_ns),
        store if store is not None else InMemoryNonceStore(policy.btauth_retention_ns),
        policy,
        observer=observer,
        sessions=sessions,
    )
    forwarder = Forwarder(admission, thread_pool, observer=observer)
    pipeline = Pipeline(
        endpoints, verifier, admission, forwarder, terminal, observer=observer, extra_verify=extra_verify
    )
    codec = GRPC_CODEC if sessions is None else GrpcCodec(((ANNOUNCE_TRAILER, SESSION_VERSION),))
    return Collaborators(thread_pool, admission, terminal, verifier, pipeline, metrics, Drain(), sessions, codec)
