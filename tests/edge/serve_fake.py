"""``python -m tests.edge.serve_fake PORT [CERT KEY [CA]]``: the edge's serve() over the fake app.

``$EDGE_TEST_WORKERS`` sets the number of Envoy processes (default 1), ``$EDGE_TEST_GRACE``
the seconds a drain waits for calls in flight (default 5).
"""

from __future__ import annotations

import os
import sys

from axon_grpc.edge.config import TlsFiles
from axon_grpc.edge.serve import serve

if __name__ == "__main__":
    port, *tls = sys.argv[1:]
    files = TlsFiles(*tls) if tls else None
    raise SystemExit(
        serve(
            "unused:unused",
            address="127.0.0.1",
            port=int(port),
            grace=float(os.environ.get("EDGE_TEST_GRACE", "5")),
            tls=files,
            workers=int(os.environ.get("EDGE_TEST_WORKERS", "1")),
            app="tests.edge.fake_app:app",
        )
    )
