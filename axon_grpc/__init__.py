"""axon-grpc: the Bittensor Axon programming model served over gRPC."""
