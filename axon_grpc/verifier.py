"""Signature and nonce checks for both signing schemes, bound to the axon's stores and policy.

The pipeline calls :meth:`Verifier.verify_legacy` or :meth:`Verifier.verify_btauth`
(the scheme is decided once per call from its headers); each raises
:class:`~axon_grpc.errors.NotVerifiedException` (401) with the reason, and records
the nonce only once the signature verified.
"""

from __future__ import annotations

from typing import Callable, Mapping

from . import btauth
from .auth import VerifyPolicy, verify_legacy
from .nonces import NonceStore
from .synapse import Synapse


class Verifier:
    """Checks callers' signatures against ``receiver`` (the axon's hotkey address)."""

    def __init__(
        self,
        receiver: Callable[[], str],
        legacy_store: NonceStore,
        btauth_store: NonceStore,
        policy: VerifyPolicy,
    ) -> None:
        self._receiver = receiver
        self.legacy_store = legacy_store
        self.btauth_store = btauth_store
        self.policy = policy

    async def verify_legacy(self, synapse: Synapse, crypto: str = "sr25519") -> None:
        """``{nonce}.{hotkey}.{axon}.{uuid}.{body_hash}`` over the synapse's dendrite info."""
        await verify_legacy(synapse, self._receiver(), self.legacy_store, self.policy, crypto)

    async def verify_btauth(self, headers: Mapping[str, str], body: bytes, method: str, path: str) -> None:
        """btauth/1 over ``method``, ``path`` and the raw ``body``."""
        policy = self.policy
        await btauth.verify_btauth(
            headers, body, method=method, path=path, receiver=self._receiver(), store=self.btauth_store,
            max_age_s=policy.btauth_max_age_s, allowed_skew_s=policy.btauth_allowed_skew_s,
            require_receiver=policy.btauth_require_receiver,
        )
