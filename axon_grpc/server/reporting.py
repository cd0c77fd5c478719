"""What a failure says on the wire and in the log.

Refusals (client faults) keep their short fixed message and are logged at debug level,
rate-limited; anything unexpected is ``Internal Server Error #{id}`` on the wire with its
traceback logged under that id. Each call also gets one debug line whose fields travel as
record attributes for structured logs (:mod:`axon_grpc.logs`): never a body, a header or a
signature.
"""

from __future__ import annotations

import logging
import time
import uuid as uuid_lib

from axon_grpc.errors import AxonError, InternalServerError, status_of
from axon_grpc.synapse import Synapse, TerminalInfo

logger = logging.getLogger("axon_grpc")


class LineBudget:
    """At most ``per_second`` log lines a second (a token bucket): a flood of refused
    requests costs the log a bounded rate, whatever the caller sends."""

    def __init__(self, per_second: float) -> None:
        self.rate = per_second
        self.tokens = per_second
        self.last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


#: Refusals (client faults) are logged at debug level, at most this many lines a second.
REFUSAL_LINES_PER_SECOND = 20
#: Longest refusal reason written to the log.
MAX_LOGGED_REASON = 200
_refusal_lines = LineBudget(REFUSAL_LINES_PER_SECOND)


def describe(error: BaseException, name: str | None) -> tuple[int, str]:
    """The status and wire message of ``error``, logged: refusals at debug, the rest with an id."""
    status = status_of(error)
    if isinstance(error, AxonError) and not isinstance(error, InternalServerError):
        if logger.isEnabledFor(logging.DEBUG) and _refusal_lines.take():
            logger.debug("%s refused with %s: %s", name, status, error.message[:MAX_LOGGED_REASON])
        return status, error.message
    error_id = str(uuid_lib.uuid4())
    logger.error("%s failed: error id %s", name, error_id, exc_info=error)
    return status, f"Internal Server Error #{error_id}"


def log_call(
    transport: str, name: str | None, synapse: Synapse, status: int, start: float, message: str | None = None
) -> None:
    """The call's one log line (debug); its fields also travel as record attributes for
    structured logs (:mod:`axon_grpc.logs`): never the body, headers or signature."""
    if logger.isEnabledFor(logging.DEBUG):
        d = synapse.dendrite
        hotkey = d.hotkey if d else None
        ms = (time.time() - start) * 1e3
        fields = {
            "transport": transport,
            "synapse": name,
            "caller_hotkey": hotkey,
            "status": status,
            "duration_ms": round(ms, 3),
            "error_id": error_id(message),
        }
        logger.debug("%s %s from %s -> %s in %.2f ms", transport, name, hotkey, status, ms, extra=fields)


#: The fixed texts that end in an error id (``... #{id}``), whose detail is in the log.
_WITH_ERROR_ID = ("Internal Server Error #", "Not Verified #")


def error_id(message: str | None) -> str | None:
    """The error id of an answer's message, or None."""
    if message is None or not message.startswith(_WITH_ERROR_ID):
        return None
    return message.rpartition("#")[2]


def log_and_handle_error(
    synapse: Synapse,
    exception: BaseException,
    status_code: int | None = None,
    start_time: float | None = None,
) -> Synapse:
    """Record an error on ``synapse.axon`` and log it; returns the synapse (the seed's function).

    Axon errors (refusals, overload, a miner's SynapseException) keep their message
    and are logged at debug level. Anything unexpected becomes ``Internal Server Error
    #{id}`` on the wire and is logged with its traceback under that id; its text never
    leaves the server.
    """
    carried = getattr(exception, "synapse", None)
    if isinstance(carried, Synapse):
        synapse = carried
    status, message = describe(exception, synapse.name)
    if status_code is not None:
        status = status_code
    info = synapse.axon
    if info is None:
        info = synapse.__dict__["axon"] = TerminalInfo()
    info.__dict__.update(status_code=status, status_message=message)
    if start_time is not None:
        info.__dict__["process_time"] = time.time() - start_time
    return synapse
