#!/usr/bin/env python3
"""Write the .proto of synapse classes: the same as `axon-grpc proto`.

python scripts/emit_proto.py my_module:MySynapse [more ...] -o out/
"""

from __future__ import annotations

import sys

from axon_grpc.cli import main

if __name__ == "__main__":
    sys.exit(main(["proto", *sys.argv[1:]]))
