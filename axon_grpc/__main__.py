import sys

from axon_grpc.cli import main

sys.exit(main())
