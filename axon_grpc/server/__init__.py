"""The miner's server: the Axon and the transport-neutral request path.

- :mod:`.axon`: the :class:`~axon_grpc.server.axon.Axon` (Bittensor's API), its start/stop.
- :mod:`.config`: ``--axon.*`` and ``BT_AXON_*`` settings.
- :mod:`.call`, :mod:`.pipeline`: what a transport hands in (``Call``) and the one method
  that answers it (``Pipeline.handle(Call) -> Outcome``).
- :mod:`.endpoints`, :mod:`.hooks`: attached synapses and the checks of the functions given
  to ``attach``.
- :mod:`.admission`, :mod:`.forwarding`, :mod:`.executor`: priority-ordered slots and the
  running of a miner's forward.
- :mod:`.terminal`, :mod:`.reporting`: what every answer says about the server, and what a
  failure says on the wire and in the log.
- :mod:`.drain`, :mod:`.loop_thread`, :mod:`.workers`: stopping, serving from sync code,
  several processes on one port.
"""
