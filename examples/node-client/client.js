#!/usr/bin/env node
// Call a Python axon-grpc miner from Node.js, by the metadata contract of the
// emitted .proto: serialize the request, hash the method path, a newline and the
// exact bytes (SHA3-256), sign
// "{nonce}.{hotkey}.{axon_hotkey}.{uuid}.{body_hash}" with an sr25519 hotkey,
// send the bytes with the bt_header_* metadata, and print the response as JSON.
//
//   node client.js --address 127.0.0.1:8091 --proto out/axon/v1/axon_service.proto \
//                  --axon-hotkey 5F... --synapse Dummy --request '{"input": 7}' [--replay]
'use strict';

const crypto = require('node:crypto');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { cryptoWaitReady, encodeAddress, randomAsU8a, sr25519PairFromSeed, sr25519Sign } = require('@polkadot/util-crypto');

const PROTOCOL_VERSION = '10005000';

function parseArgs(argv) {
  const args = { synapse: 'Dummy', request: '{}', replay: false, timeout: 12 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    if (key === '--replay') { args.replay = true; continue; }
    if (!key.startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${key}`);
    args[key.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = argv[++i];
  }
  for (const required of ['address', 'proto', 'axonHotkey']) {
    if (!args[required]) throw new Error(`--${required.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} is required`);
  }
  return args;
}

function loadMethod(protoFile, synapse) {
  const definition = protoLoader.loadSync(protoFile, {
    keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
    includeDirs: [path.dirname(protoFile)],
  });
  const service = definition['axon.v1.Axon'];
  if (!service || !service[synapse]) throw new Error(`axon.v1.Axon/${synapse} is not in ${protoFile}`);
  return service[synapse];
}

function signedMetadata(pair, hotkey, axonHotkey, uuid, methodPath, body, timeout) {
  const nonce = (BigInt(Date.now()) * 1000000n + BigInt(process.hrtime.bigint() % 1000000n)).toString();
  // The hash binds the method: a call signed for one synapse fails at another.
  const bodyHash = crypto.createHash('sha3-256').update(methodPath + '\n').update(body).digest('hex');
  const message = `${nonce}.${hotkey}.${axonHotkey}.${uuid}.${bodyHash}`;
  const signature = '0x' + Buffer.from(sr25519Sign(new TextEncoder().encode(message), pair)).toString('hex');
  const metadata = new grpc.Metadata();
  const values = {
    bt_header_dendrite_hotkey: hotkey,
    bt_header_dendrite_nonce: nonce,
    bt_header_dendrite_uuid: uuid,
    bt_header_dendrite_version: PROTOCOL_VERSION,
    bt_header_dendrite_signature: signature,
    bt_header_dendrite_crypto: 'sr25519',
    computed_body_hash: bodyHash,
    timeout: String(timeout),
  };
  for (const [key, value] of Object.entries(values)) metadata.set(key, value);
  return metadata;
}

function call(client, method, methodPath, body, metadata, timeout) {
  // Resolves once both the callback (response or error) and the status (trailers) arrived.
  return new Promise((resolve) => {
    const outcome = {};
    let pending = 2;
    const done = () => { if (--pending === 0) resolve(outcome); };
    const deadline = new Date(Date.now() + timeout * 1000);
    const rpc = client.makeUnaryRequest(
      methodPath, (bytes) => bytes, method.responseDeserialize, body, metadata, { deadline },
      (error, response) => { outcome.error = error; outcome.response = response; done(); },
    );
    rpc.on('status', (status) => { outcome.trailing = status.metadata.getMap(); done(); });
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  await cryptoWaitReady();
  const pair = sr25519PairFromSeed(randomAsU8a(32));
  const hotkey = encodeAddress(pair.publicKey, 42);
  const method = loadMethod(args.proto, args.synapse);
  const body = method.requestSerialize(JSON.parse(args.request));
  const methodPath = `/axon.v1.Axon/${args.synapse}`;
  const metadata = signedMetadata(pair, hotkey, args.axonHotkey, crypto.randomUUID(), methodPath, body,
                                  Number(args.timeout));
  const client = new grpc.Client(args.address, grpc.credentials.createInsecure());

  const first = await call(client, method, methodPath, body, metadata, Number(args.timeout));
  const result = { hotkey, request_bytes: body.toString('hex') };
  if (first.error) {
    result.code = first.error.code;
    result.details = first.error.details;
  } else {
    result.code = grpc.status.OK;
    result.response = first.response;
    result.axon_status_code = Number(first.trailing.bt_header_axon_status_code);
    result.axon_hotkey = first.trailing.bt_header_axon_hotkey;
  }
  if (args.replay) {
    const again = await call(client, method, methodPath, body, metadata, Number(args.timeout));
    result.replay = again.error ? { code: again.error.code, details: again.error.details } : { code: grpc.status.OK };
  }
  client.close();
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((error) => {
  process.stderr.write(`node client: ${error.message}\n`);
  process.exit(1);
});
