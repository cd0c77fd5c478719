"""Many axons on loopback in one process, for the Dendrite fan-out benchmark.

One axon (one hotkey, one pipeline, an ``async def`` Dummy forward) listens on ``--live``
gRPC ports and as many HTTP bridge ports; ``--dead`` more ports accept connections and
never answer (an axon that hangs). Run as a module::

    python -m bench.fleet --live 230 --dead 26

Prints ``BENCH-READY {json}`` (pid, hotkey, grpc, http and dead ports) once listening;
stops on SIGTERM or SIGINT. The nonce store's replay window is widened: every port is
the same axon here, so one validator's whole step lands on one store, where on a subnet
it would spread over one store per miner.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from typing import Optional

import grpc
import uvicorn

from axon_grpc import Axon, KeypairWallet, Synapse
from axon_grpc.auth.legacy import VerifyPolicy
from axon_grpc.auth.nonces import InMemoryNonceStore
from axon_grpc.transports.grpc_aio import AxonService


class Dummy(Synapse):
    input: int
    output: Optional[int] = None

    required_hash_fields = ("input",)


async def forward(synapse: Dummy) -> Dummy:
    synapse.output = synapse.input * 2
    return synapse


async def serve(live: int, dead: int) -> None:
    from bridge.server import bind_socket, make_config

    store = InMemoryNonceStore(VerifyPolicy().retention_ns, replay_window=4096)
    axon = Axon(
        wallet=KeypairWallet.generate(),
        ip="127.0.0.1",
        external_ip="127.0.0.1",
        port=0,
        http_port=0,
        max_workers=max(live, 10),
        max_queue=4 * max(live, 10),
        nonce_store=store,
    )
    axon.attach(forward_fn=forward)
    await axon.start_async(edge=False)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((AxonService(axon.endpoints, axon.pipeline.handle),))
    grpc_ports = [server.add_insecure_port("127.0.0.1:0") for _ in range(live)]
    await server.start()
    sockets = [bind_socket("127.0.0.1", 0) for _ in range(live)]
    http = uvicorn.Server(make_config(axon.http.asgi, "127.0.0.1", 0, max_header_bytes=32 * 1024))
    http_task = asyncio.get_running_loop().create_task(http.serve(sockets=sockets))
    while not http.started:
        await asyncio.sleep(0.01)
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never read, never answered, kept open

    holes = [await asyncio.start_server(hold, "127.0.0.1", 0) for _ in range(dead)]
    print(
        "BENCH-READY "
        + json.dumps(
            {
                "pid": os.getpid(),
                "hotkey": axon.wallet.hotkey.ss58_address,
                "grpc": grpc_ports,
                "http": [s.getsockname()[1] for s in sockets],
                "dead": [h.sockets[0].getsockname()[1] for h in holes],
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    http.should_exit = True
    await http_task
    await server.stop(None)
    await axon.stop_async(grace=None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--live", type=int, default=230)
    parser.add_argument("--dead", type=int, default=26)
    args = parser.parse_args()
    asyncio.run(serve(args.live, args.dead))


if __name__ == "__main__":
    main()
