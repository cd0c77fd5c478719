"""The validator's side: the :class:`~axon_grpc.client.dendrite.Dendrite`.

- :mod:`.dendrite`: the client, its ``query``/``forward``/``call`` API.
- :mod:`.grpc_transport`, :mod:`.http_transport`: one per wire (gRPC, the legacy HTTP
  protocol of SDK 7.2-10.5 axons).
- :mod:`.signing`: everything a Dendrite signs and checks; :mod:`.answer`: what it reads
  from an answer; :mod:`.tls`: whom it trusts.
"""
