"""Wire formats: each translates requests into :class:`~axon_grpc.server.call.Call` and
:class:`~axon_grpc.server.call.Outcome` into answers, and does nothing else.

- :mod:`.grpc_aio`, :mod:`.aio_discovery`: the in-process ``grpc.aio`` server, with
  reflection and health checking.
- :mod:`.grpc_asgi`, :mod:`.grpc_wire`, :mod:`.asgi_health`, :mod:`.asgi_reflection`: gRPC
  over ASGI, as Envoy serves it.
- :mod:`.grpc_codec`: an Outcome in gRPC terms, for both gRPC transports.
- :mod:`.json_body`: legacy HTTP bodies (the HTTP bridge itself is the top-level
  ``bridge`` package).
"""
