"""The bridge example of docs/getting-started.md: gRPC on BT_AXON_PORT (8091) and the legacy HTTP protocol on a
second port, called once as an SDK 10.5 dendrite would."""
import os

from axon_grpc import Axon, Keypair, KeypairWallet
from axon_grpc.cli.demo import Dummy, blacklist, forward, legacy_http_call

wallet = KeypairWallet.generate()  # a throw-away hotkey
http_port = int(os.environ.get("EXAMPLE_HTTP_PORT", "8092"))  # 0: a port the system picks

axon = Axon(wallet=wallet, http_port=http_port)    # e.g. 8092 (0: any free port); or --axon.http_port
axon.attach(forward_fn=forward, blacklist_fn=blacklist).start()

status, body, _ = legacy_http_call("127.0.0.1", axon.http_port, wallet.hotkey.ss58_address, Dummy(input=3),
                                   Keypair.generate())
print(status, body["output"])  # 200 6
axon.stop()
