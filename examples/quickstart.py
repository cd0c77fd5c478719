"""The README example: serve a synapse over gRPC and call it once."""
from typing import Optional
from axon_grpc import Axon, Dendrite, Synapse

BANNED: set[str] = set()

class Dummy(Synapse):
    input: int
    output: Optional[int] = None
    required_hash_fields = ("input",)

def forward(synapse: Dummy) -> Dummy:
    synapse.output = synapse.input * 2
    return synapse

def blacklist(synapse: Dummy) -> tuple[bool, str]:
    return synapse.dendrite.hotkey in BANNED, "banned hotkey"

axon = Axon(ip="127.0.0.1", external_ip="127.0.0.1")  # port: BT_AXON_PORT or 8091
axon.attach(forward_fn=forward, blacklist_fn=blacklist).start()

result = Dendrite().query(axon.info(), Dummy(input=21), timeout=12.0, deserialize=False)
print(result.output, result.dendrite.status_code, result.dendrite.status_message)  # 42 200 Success
axon.stop()
