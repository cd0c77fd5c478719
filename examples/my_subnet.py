"""The subnet's synapse for the validator-loop example (input -> output = 2 * input)."""
from axon_grpc.cli.demo import Dummy

__all__ = ["Dummy"]
