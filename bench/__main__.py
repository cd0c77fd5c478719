"""``python -m bench``: the benchmark suite (docs/BENCHMARKS.md)."""

import sys

from .cli import main

sys.exit(main())
