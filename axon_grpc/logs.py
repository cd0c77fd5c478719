"""Log output: human-readable lines (the default) or one JSON object per line.

``--log-format json`` turns every record into ``{"time", "level", "logger", "message"}``
plus the call fields the pipeline attaches to its per-call line (``synapse``,
``caller_hotkey``, ``status``, ``duration_ms``, ``transport``, ``error_id``) and, for
errors, the exception's type and traceback. The pipeline never puts a request's body,
headers or signature in a record, so neither format carries them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

#: Environment variable carrying ``--log-format`` to worker processes.
FORMAT_ENV = "AXON_GRPC_LOG_FORMAT"
#: The formats ``--log-format`` accepts.
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Record attributes copied into a JSON line when present.
CALL_FIELDS = ("synapse", "caller_hotkey", "status", "duration_ms", "transport", "error_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CALL_FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "WARNING", fmt: str = "text", *, process: bool = False) -> None:
    """Set the root logger's level and format (``text`` or ``json``), replacing its handlers.

    ``process`` adds the process id to text lines (worker processes).
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        text = TEXT_FORMAT.replace("%(name)s", "%(name)s[%(process)d]") if process else TEXT_FORMAT
        handler.setFormatter(logging.Formatter(text))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
