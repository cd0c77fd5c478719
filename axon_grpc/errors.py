"""Exceptions and the one status table both transports use.

Hierarchy (the names of Bittensor SDK 10.5's ``bittensor.core.errors``, so a miner's
``raise``/``except`` lines port unchanged; each carries ``message`` and ``synapse``)::

    AxonError                          base; carries an HTTP-style ``status_code``
    ├── InvalidRequestNameError    400  the request names no synapse
    ├── SynapseParsingError        400  headers/metadata/body cannot be parsed
    ├── BodyHashMismatch           400  body does not match the signed body hash
    ├── RequestTimeout             408  the call ran out of time at the axon
    ├── RequestTooLarge            413  a size limit was exceeded
    ├── ServiceUnavailable         503  overloaded or a dependency is down
    │   └── Shed                   503  refused by admission: queue full, priority too low
    └── SynapseException           500  raised by user code with a message to show
        ├── NotVerifiedException         401  signature, nonce or custom verify failed
        │   ├── NonceRefused             401  a replayed, stale or future nonce
        │   └── VerifyRefused            401  the miner's verify_fn refused the caller
        ├── BlacklistedException         403  ``blacklist_fn`` refused the caller
        ├── UnknownSynapseError          404  no synapse of that name is attached
        ├── PriorityException            503  the request could not be prioritised
        ├── RunException                 500  the forward could not be run
        ├── PostProcessException         500  the response could not be finished
        ├── SynapseDendriteNoneException 500  the synapse has no dendrite info
        └── InternalServerError          500  anything else; detail only in the log

    SchemaError (TypeError)        a synapse type cannot be mapped to protobuf
    InvalidAddress (ValueError)    an SS58 address does not decode
    KeyfileError (ValueError)      a wallet keyfile is unreadable or unusable

Each class also names its refusal ``reason`` (:class:`Reason`), the label operators
count refusals by (:mod:`axon_grpc.metrics.observer`); :func:`reason_of` reads it for any
exception.

The HTTP-style code travels on both transports (``bt_header_axon_status_code``); the
gRPC status number is derived from it by the one table (:data:`GRPC_STATUS`,
:func:`grpc_status_number`), and a client maps a gRPC status back with
:func:`status_of_grpc_number`; ``grpc.StatusCode`` appears only at the gRPC edge
(:mod:`axon_grpc.transports.grpc_codec`).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from axon_grpc.synapse import Synapse


class Status(IntEnum):
    """HTTP-style status codes an axon answers with."""

    OK = 200  #: the forward ran and its synapse is returned
    BAD_REQUEST = 400  #: malformed metadata, headers or body; body hash mismatch
    UNAUTHORIZED = 401  #: signature, nonce or custom verification failed
    FORBIDDEN = 403  #: blacklisted by the miner's ``blacklist_fn``
    NOT_FOUND = 404  #: no synapse of that name is attached
    TIMEOUT = 408  #: the deadline passed before a response was ready
    TOO_LARGE = 413  #: request body or metadata over the configured bound
    UNPROCESSABLE = 422  #: the body is not JSON (bridge) or the response unparsable (client)
    HEADERS_TOO_LARGE = 431  #: too many or too large headers (bridge)
    CLIENT_CLOSED = 499  #: the caller left before the answer (nginx's 499): counted, never sent
    INTERNAL = 500  #: the forward or the axon failed; detail in the server log
    NOT_IMPLEMENTED = 501  #: the transport does not offer this call shape
    UNAVAILABLE = 503  #: overloaded, shutting down, or unreachable


class Reason:
    """Why a call was not answered 200: the ``reason`` label of ``axon_refusals_total``."""

    SIGNATURE = "signature"  #: bad or missing signature, or a body that is not the signed one
    NONCE = "nonce"  #: replayed, stale or future nonce
    VERIFY = "verify"  #: the miner's ``verify_fn`` refused the caller
    BLACKLIST = "blacklist"  #: ``blacklist_fn`` refused the caller
    SHED = "shed"  #: admission queue full and the caller's priority too low to displace anyone
    DEADLINE = "deadline"  #: the deadline passed while queued or forwarding
    SIZE = "size"  #: the request over a size bound
    OVERLOAD = "overload"  #: other 503s: the nonce store down or full, a priority failure
    INVALID = "invalid"  #: malformed headers, metadata or body; not JSON
    NOT_FOUND = "not_found"  #: no synapse of that name is attached
    CANCELLED = "cancelled"  #: the client went away before the answer was complete
    ERROR = "error"  #: the forward or the axon failed (500)
    FORWARD = "forward"  #: the forward answered with a status of its own (``synapse.axon.status_code``)


class GrpcStatus(IntEnum):
    """gRPC status numbers (the ``grpc-status`` trailer), as the gRPC spec numbers them."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


#: The one status table: each HTTP-style status and the gRPC status it goes out as (unknown: INTERNAL).
GRPC_STATUS: dict[int, GrpcStatus] = {
    Status.OK: GrpcStatus.OK,
    Status.BAD_REQUEST: GrpcStatus.INVALID_ARGUMENT,
    Status.UNAUTHORIZED: GrpcStatus.UNAUTHENTICATED,
    Status.FORBIDDEN: GrpcStatus.PERMISSION_DENIED,
    Status.NOT_FOUND: GrpcStatus.UNIMPLEMENTED,
    Status.TIMEOUT: GrpcStatus.DEADLINE_EXCEEDED,
    Status.TOO_LARGE: GrpcStatus.RESOURCE_EXHAUSTED,
    Status.UNPROCESSABLE: GrpcStatus.INVALID_ARGUMENT,
    Status.HEADERS_TOO_LARGE: GrpcStatus.RESOURCE_EXHAUSTED,
    Status.CLIENT_CLOSED: GrpcStatus.CANCELLED,
    Status.INTERNAL: GrpcStatus.INTERNAL,
    Status.NOT_IMPLEMENTED: GrpcStatus.UNIMPLEMENTED,
    Status.UNAVAILABLE: GrpcStatus.UNAVAILABLE,
}

#: How a client reads a gRPC status as an HTTP-style one (unknown: 500).
STATUS_OF_GRPC: dict[int, int] = {
    GrpcStatus.OK: Status.OK,
    GrpcStatus.INVALID_ARGUMENT: Status.BAD_REQUEST,
    GrpcStatus.FAILED_PRECONDITION: Status.BAD_REQUEST,
    GrpcStatus.OUT_OF_RANGE: Status.BAD_REQUEST,
    GrpcStatus.UNAUTHENTICATED: Status.UNAUTHORIZED,
    GrpcStatus.PERMISSION_DENIED: Status.FORBIDDEN,
    GrpcStatus.NOT_FOUND: Status.NOT_FOUND,
    GrpcStatus.UNIMPLEMENTED: Status.NOT_FOUND,
    GrpcStatus.DEADLINE_EXCEEDED: Status.TIMEOUT,
    GrpcStatus.CANCELLED: Status.TIMEOUT,
    GrpcStatus.RESOURCE_EXHAUSTED: Status.TOO_LARGE,
    GrpcStatus.UNAVAILABLE: Status.UNAVAILABLE,
    GrpcStatus.INTERNAL: Status.INTERNAL,
    GrpcStatus.UNKNOWN: Status.INTERNAL,
    GrpcStatus.DATA_LOSS: Status.INTERNAL,
    GrpcStatus.ABORTED: Status.INTERNAL,
    GrpcStatus.ALREADY_EXISTS: Status.INTERNAL,
}


def grpc_status_number(http_status: int) -> GrpcStatus:
    """The gRPC status number of an HTTP-style status (the one table; unknown codes are INTERNAL)."""
    return GRPC_STATUS.get(int(http_status), GrpcStatus.INTERNAL)


def status_of_grpc_number(code: int) -> int:
    """The HTTP-style status a client reads gRPC status ``code`` as (unknown numbers are 500)."""
    return STATUS_OF_GRPC.get(int(code), Status.INTERNAL)


def __getattr__(name: str) -> Any:
    """``grpc_status_for`` and ``http_status_for`` (``grpc.StatusCode`` in and out) live at the
    gRPC edge, :mod:`axon_grpc.transports.grpc_codec`; this module imports no grpc."""
    if name in ("grpc_status_for", "http_status_for"):
        from axon_grpc.transports import grpc_codec

        return getattr(grpc_codec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class AxonError(Exception):
    """Base of every error the request pipeline turns into a status."""

    status_code: int = Status.INTERNAL
    reason: str = Reason.ERROR
    #: Whether the answer carries the axon's signature (overload refusals do not: the cheapest answers).
    signed: bool = True

    def __init__(self, message: str = "", synapse: Synapse | None = None, *, rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.synapse = synapse
        #: The rule of docs/SPEC.md the request broke (``R7``), or None: a gRPC answer names it.
        self.rule = rule


class InvalidRequestNameError(AxonError):
    status_code = Status.BAD_REQUEST
    reason = Reason.INVALID


class SynapseParsingError(AxonError):
    status_code = Status.BAD_REQUEST
    reason = Reason.INVALID


class BodyHashMismatch(AxonError):
    status_code = Status.BAD_REQUEST
    reason = Reason.SIGNATURE


class RequestTimeout(AxonError):
    status_code = Status.TIMEOUT
    reason = Reason.DEADLINE


class RequestTooLarge(AxonError):
    status_code = Status.TOO_LARGE
    reason = Reason.SIZE


class ServiceUnavailable(AxonError):
    status_code = Status.UNAVAILABLE
    reason = Reason.OVERLOAD
    signed = False


class Shed(ServiceUnavailable):
    """Admission refused the request: the queue is full and its priority displaces no one."""

    reason = Reason.SHED


class SynapseException(AxonError):
    """Raise from a forward to answer 500 with this message (no error id).

    ``SynapseException(message, synapse)``, as in the SDK: ``synapse`` is the synapse
    the error is about (a forward passes the one it was given).
    """

    status_code = Status.INTERNAL

    def __init__(
        self, message: str = "Synapse Exception", synapse: Synapse | None = None, *, rule: str | None = None
    ) -> None:
        super().__init__(message, synapse, rule=rule)


class NotVerifiedException(SynapseException):
    status_code = Status.UNAUTHORIZED
    reason = Reason.SIGNATURE


class NonceRefused(NotVerifiedException):
    """The signature verified but the nonce is replayed, too old or too far ahead."""

    reason = Reason.NONCE


class VerifyRefused(NotVerifiedException):
    """The miner's ``verify_fn`` (or ``default_verify``) refused the caller; detail in the log."""

    reason = Reason.VERIFY


class BlacklistedException(SynapseException):
    status_code = Status.FORBIDDEN
    reason = Reason.BLACKLIST


class UnknownSynapseError(SynapseException):
    status_code = Status.NOT_FOUND
    reason = Reason.NOT_FOUND


class PriorityException(SynapseException):
    """The request's priority could not be met (the SDK answers it 503)."""

    status_code = Status.UNAVAILABLE
    reason = Reason.OVERLOAD


class RunException(SynapseException):
    """The requested function cannot be executed: a server error with this message."""

    status_code = Status.INTERNAL


class PostProcessException(SynapseException):
    """The response could not be finished after the forward ran."""

    status_code = Status.INTERNAL


class SynapseDendriteNoneException(SynapseException):
    """The synapse carries no dendrite terminal info."""

    status_code = Status.INTERNAL

    def __init__(self, message: str = "Synapse Dendrite is None", synapse: Synapse | None = None) -> None:
        super().__init__(message, synapse)


class InternalServerError(SynapseException):
    """Anything unexpected: answered ``Internal Server Error #{id}``, detail in the log."""

    status_code = Status.INTERNAL


class SchemaError(TypeError):
    """A synapse field has no faithful protobuf mapping (raised at ``attach``)."""


class InvalidAddress(ValueError):
    """An SS58 address is malformed or its checksum does not match."""


class KeyfileError(ValueError):
    """A wallet keyfile cannot be read or used."""


def status_of(exc: BaseException) -> int:
    """HTTP-style status for any exception (non-axon errors are 500)."""
    return int(getattr(exc, "status_code", Status.INTERNAL)) if isinstance(exc, AxonError) else 500


def reason_of(exc: BaseException) -> str:
    """The :class:`Reason` of any exception (non-axon errors are ``error``)."""
    return exc.reason if isinstance(exc, AxonError) else Reason.ERROR


__all__: list[Any] = [
    "GRPC_STATUS",
    "STATUS_OF_GRPC",
    "AxonError",
    "BlacklistedException",
    "BodyHashMismatch",
    "GrpcStatus",
    "InternalServerError",
    "InvalidAddress",
    "InvalidRequestNameError",
    "KeyfileError",
    "NonceRefused",
    "NotVerifiedException",
    "PostProcessException",
    "PriorityException",
    "Reason",
    "RequestTimeout",
    "RequestTooLarge",
    "RunException",
    "SchemaError",
    "ServiceUnavailable",
    "Shed",
    "Status",
    "SynapseDendriteNoneException",
    "SynapseException",
    "SynapseParsingError",
    "UnknownSynapseError",
    "VerifyRefused",
    "grpc_status_number",
    "reason_of",
    "status_of",
    "status_of_grpc_number",
]
