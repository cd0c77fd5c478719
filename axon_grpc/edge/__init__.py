"""The Envoy edge: one port for gRPC (h2c, h2 over TLS) and the legacy HTTP protocol.

``axon-grpc serve MODULE:FUNCTION`` runs the axon inside Envoy through ``pyvoy``
(an ASGI server embedding Python in Envoy). Modules:

- :mod:`.wire`: the gRPC length-prefixed message format, ``grpc-timeout``, ``grpc-message``.
- :mod:`.grpc_asgi`: gRPC over ASGI, a thin translator to ``pipeline.handle(call)``.
- :mod:`.health`, :mod:`.reflection`: the built-in gRPC services on the same port.
- :mod:`.app`: the ASGI application routing gRPC and legacy HTTP requests.
- :mod:`.config`: Envoy's limits and TLS settings (the edge best-practice values).
- :mod:`.serve`: starting, draining and stopping the Envoy processes.
"""
