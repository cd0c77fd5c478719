"""The application ``axon-grpc serve`` runs in the edge tests: Dummy and a streaming Story.

``build_axon`` takes its hotkey seed from ``$EDGE_TEST_AXON_SEED`` so the test knows it.
``build_published_axon`` also serves it (``axon.serve``) in the local registry on
``$EDGE_TEST_NETUID``, with the certificate of ``$EDGE_TEST_CERTIFICATE`` when set.
``Whoami`` answers the process id of the Envoy process that ran it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator, Optional

from axon_grpc import Axon
from axon_grpc.auth.keys import Keypair
from axon_grpc.auth.wallet import KeypairWallet
from axon_grpc.streaming import StreamingSynapse
from axon_grpc.synapse import Synapse

from ..support import dummy_blacklist, dummy_forward, flood_forward, sleepy_forward


class Story(StreamingSynapse):
    prompt: str = ""
    completion: Optional[str] = None


async def story_forward(synapse: Story) -> AsyncIterator[str]:
    words = []
    for word in synapse.prompt.split():
        words.append(word.upper())
        yield word.upper()
        await asyncio.sleep(0.01)
    synapse.completion = " ".join(words)


class Nap(StreamingSynapse):
    seconds: float = 0.0


async def nap_forward(synapse: Nap) -> AsyncIterator[str]:
    yield "start"
    await asyncio.sleep(synapse.seconds)
    yield "end"


class Whoami(Synapse):
    pid: int = 0


async def whoami_forward(synapse: Whoami) -> Whoami:
    synapse.pid = os.getpid()
    return synapse


def build_axon() -> Axon:
    wallet = KeypairWallet(Keypair.create_from_seed(os.environ["EDGE_TEST_AXON_SEED"]))
    axon = Axon(wallet=wallet)
    axon.attach(forward_fn=dummy_forward, blacklist_fn=dummy_blacklist)
    axon.attach(forward_fn=story_forward)
    axon.attach(forward_fn=nap_forward)
    axon.attach(forward_fn=whoami_forward)
    axon.attach(forward_fn=sleepy_forward)
    axon.attach(forward_fn=flood_forward)
    return axon


def build_published_axon() -> Axon:
    axon = build_axon()
    certificate = os.environ.get("EDGE_TEST_CERTIFICATE")
    axon.serve(int(os.environ["EDGE_TEST_NETUID"]), certificate=Path(certificate).read_text() if certificate else None)
    return axon
