"""The axon the client kits' tests call (clients/typescript, clients/go), in-process or by
``axon-grpc serve tests.kits_app:build_axon`` (hotkey seed from ``$KITS_AXON_SEED``, its scheme
from ``$KITS_AXON_CRYPTO``, sr25519 by default).

Dummy (unary, ``input`` 13 is blacklisted), Tally (a map field), Story (a stream), Said (the
miner refuses with its own message), Slow (answers after ``seconds``); Absent is in the
emitted ``.proto`` but not attached.
"""

from __future__ import annotations

import asyncio
import os
from typing import Optional

from axon_grpc import Axon, Synapse
from axon_grpc.auth.keys import Keypair
from axon_grpc.auth.wallet import KeypairWallet

from .edge.axon_app import story_forward
from .support import dummy_blacklist, dummy_forward, said_forward

#: Requests above this many bytes are refused (413), so the kits' tests can see one.
MAX_REQUEST_BYTES = 64 * 1024
#: Requests that may wait for a worker: the 200 concurrent calls of the tests all wait (the
#: default, 8 x 10 workers, sheds some with 503 by design, which is not what they test).
MAX_QUEUE = 256

#: What `axon-grpc proto` emits for the kits (Absent included, unattached).
SYNAPSES = ["tests.support:Dummy", "tests.kits_app:Tally", "tests.edge.axon_app:Story", "tests.support:Said"]
SYNAPSES += ["tests.kits_app:Slow", "tests.kits_app:Absent"]


class Tally(Synapse):
    counts: dict[str, int] = {}
    total: Optional[int] = None


def tally_forward(synapse: Tally) -> Tally:
    synapse.total = sum(synapse.counts.values())
    return synapse


class Slow(Synapse):
    seconds: float = 0.0


async def slow_forward(synapse: Slow) -> Slow:
    await asyncio.sleep(synapse.seconds)
    return synapse


class Absent(Synapse):
    """Named in the emitted ``.proto``, attached to no axon: its method is answered 404."""

    value: int = 0


def build_axon(seed: str | None = None, crypto: str | None = None, **kwargs: object) -> Axon:
    seed = seed or os.environ["KITS_AXON_SEED"]
    crypto = crypto or os.environ.get("KITS_AXON_CRYPTO", "sr25519")
    wallet = KeypairWallet(Keypair.create_from_seed(seed, crypto))
    kwargs.setdefault("max_queue", MAX_QUEUE)
    axon = Axon(wallet=wallet, max_request_bytes=MAX_REQUEST_BYTES, **kwargs)  # type: ignore[arg-type]
    axon.attach(forward_fn=dummy_forward, blacklist_fn=dummy_blacklist)
    axon.attach(forward_fn=tally_forward)
    axon.attach(forward_fn=story_forward)
    axon.attach(forward_fn=said_forward)
    axon.attach(forward_fn=slow_forward)
    return axon
