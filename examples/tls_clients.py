"""The TLS client settings of docs/operating/tls.md: a Dendrite trusting a CA, pinning one axon's certificate,
or presenting a client certificate; and a subnet call that pins what axons published."""
import asyncio
import os
import subprocess
import tempfile

from axon_grpc import Axon, Dendrite, KeypairWallet
from axon_grpc.cli.demo import Dummy, forward

os.chdir(tempfile.mkdtemp())
for name in ("ca", "axon", "me"):  # throw-away self-signed certificates, made with the openssl CLI
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}", "-days", "1"],
                   check=True, capture_output=True)
wallet = KeypairWallet.generate()
axon = Axon(ip="127.0.0.1", external_ip="127.0.0.1")  # port: BT_AXON_PORT or 8091 (cleartext here)
axon_hotkey = axon.wallet.hotkey.ss58_address


async def main() -> None:
    axon.attach(forward_fn=forward)
    await axon.start_async()
    axon.serve(netuid=1)  # no certificate published: the subnet call below stays cleartext
    dendrite = Dendrite(wallet)
    Dendrite(wallet, tls_ca="ca.pem")                           # trust this CA for every axon
    Dendrite(wallet, certificates={axon_hotkey: "axon.pem"})    # pin one axon's certificate
    Dendrite(wallet, tls_ca="ca.pem", tls_cert="me.pem", tls_key="me.key")   # mTLS client
    await dendrite.forward(synapse=Dummy(input=3), netuid=1)    # pins what the axons published
    print(await dendrite.forward(synapse=Dummy(input=3), netuid=1))  # [6]
    await dendrite.aclose()
    await axon.stop_async()


asyncio.run(main())
