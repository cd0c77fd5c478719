"""Who is calling, proven: keys, wallets, both signing schemes and replay protection.

- :mod:`.keys`: sr25519/ed25519 keypairs, signatures, SS58; :mod:`.wallet`: keyfile wallets.
- :mod:`.legacy`: the ``bt_header_*`` scheme; :mod:`.btauth`: SDK 11's ``btauth/1``.
- :mod:`.credentials`: the caller's credentials read from a request in one pass;
  :mod:`.verifier`: signature and nonce checks bound to an axon's stores and policy.
- :mod:`.nonces`, :mod:`.redis_store`: the replay window, in memory or shared on Redis.

``axon_grpc.auth`` was the legacy scheme's module: its names (``V_7_2_0``,
``VerifyPolicy``, ``grpc_body_hash``...) are still found here.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from . import legacy

    try:
        return getattr(legacy, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
