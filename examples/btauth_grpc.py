"""The btauth/1 example of docs/contract.md: a validator on SDK 11 signs a gRPC call with bittensor.http_auth."""
import tempfile

from axon_grpc import Axon
from axon_grpc.cli.demo import Dummy, forward
from axon_grpc.schema import schema_for

axon = Axon(ip="127.0.0.1", external_ip="127.0.0.1")  # port: BT_AXON_PORT or 8091
axon.attach(forward_fn=forward).start()
address, miner_hotkey = f"127.0.0.1:{axon.port}", axon.wallet.hotkey.ss58_address
request_message = schema_for(Dummy).message_class(input=7)
import bittensor  # noqa: E402  (SDK 11: a wallet of its own, in a temporary folder)

wallet = bittensor.Wallet(name="validator", hotkey="h", path=tempfile.mkdtemp())
wallet.create_new_hotkey(suppress=True)

import bittensor, grpc
body = request_message.SerializeToString()             # e.g. Dummy(input=7) from the emitted .proto
headers = bittensor.http_auth.sign(wallet, method="POST", path="/axon.v1.Axon/Dummy",
                                   body=body, receiver_ss58=miner_hotkey)
rpc = grpc.insecure_channel(address).unary_unary("/axon.v1.Axon/Dummy")
reply = rpc(body, metadata=[(k.lower(), v) for k, v in headers.items()])

print(schema_for(Dummy).message_class.FromString(reply).output)  # 14
axon.stop()
