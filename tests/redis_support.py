"""Redis for the tests of the shared nonce store: the harness's server, and when to skip."""

from __future__ import annotations

import os
import shutil

from axon_grpc.testing import REDIS_MISSING, RedisServer

#: Why Redis tests cannot run here (None when they can).
MISSING_REASON = None if shutil.which("redis-server") else REDIS_MISSING


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


__all__ = ["MISSING_REASON", "RedisServer", "in_ci"]
