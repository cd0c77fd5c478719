// The kit's test driver: calls a real axon through stubs typed by proto-loader-gen-types and
// prints what each call got, as JSON (tests/test_client_kits.py asserts on it).
//   node drive.js ADDRESS PROTO SEED CRYPTO
//   node drive.js ADDRESS PROTO SEED CRYPTO AXON_HOTKEY   (a forging server: Dummy 1, 2, 3 with verifyAnswers)
//   node drive.js ADDRESS PROTO SEED CRYPTO AXON_HOTKEY window   (a holding server: Dummy 0, then 1..199 at once)
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { type Crypto, Hotkey, axonHotkey, connect, openSession, signable, terminal } from '../src/index.js';
import type { ProtoGrpcType } from './gen/axon_service.js';
import type { AxonClient } from './gen/axon/v1/Axon.js';

interface Outcome {
  code: number;
  details?: string;
  reply?: Record<string, unknown>;
  status_code?: number;
  axon_hotkey?: string;
  verified?: boolean;
  contract?: string;
}

type Unary<Req, Res> = (request: Req, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;

function call<Req, Res extends object>(method: Unary<Req, Res>, request: Req): Promise<Outcome> {
  return new Promise((resolve) => {
    method(request, (error, reply) => {
      if (error) {
        const info = terminal(error);
        resolve({ code: error.code, details: error.details, status_code: info?.statusCode, axon_hotkey: info?.hotkey });
        return;
      }
      const info = terminal(reply);
      resolve({
        code: grpc.status.OK,
        reply: { ...reply } as Record<string, unknown>,
        status_code: info?.statusCode,
        axon_hotkey: info?.hotkey,
        verified: info?.verified,
        contract: info?.contract,
      });
    });
  });
}

function story(client: AxonClient, prompt: string): Promise<Outcome & { chunks: string[]; completion?: string }> {
  return new Promise((resolve) => {
    const chunks: string[] = [];
    let completion: string | undefined;
    const stream = client.Story({ prompt });
    stream.on('data', (message) => {
      if (message.chunk) chunks.push(message.chunk.data);
      if (message.final) completion = message.final.completion;
    });
    stream.on('error', () => undefined); // the status says it
    stream.on('status', (status: grpc.StatusObject) => {
      const statusCode = terminal(status)?.statusCode;
      resolve({ code: status.code, details: status.details, status_code: statusCode, chunks, completion });
    });
  });
}

/** 200 calls at once on one client: their status codes, how many answers are right, the messages. */
async function burst(client: AxonClient): Promise<Record<string, unknown>> {
  const dummy = client.Dummy.bind(client);
  const calls = await Promise.all(Array.from({ length: 200 }, (_, i) => call(dummy, { input: 100 + i })));
  const codes: Record<string, number> = {};
  for (const outcome of calls) codes[outcome.code] = (codes[outcome.code] ?? 0) + 1;
  return {
    codes,
    right: calls.filter((outcome, i) => outcome.reply?.output === 2 * (100 + i)).length,
    details: [...new Set(calls.map((outcome) => outcome.details).filter(Boolean))],
  };
}

async function main(): Promise<void> {
  const [address, proto, seed, crypto, forging, mode] = process.argv.slice(2) as [
    string,
    string,
    string,
    Crypto,
    string?,
    string?,
  ];
  const definition = signable(protoLoader.loadSync(proto, { keepCase: true, longs: Number, defaults: true }));
  const { Axon } = (grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType).axon.v1;
  const hotkey = Hotkey.fromSeed(crypto, seed);
  if (mode === 'sessions') {
    // a session, a call on it, the same call replayed (counter and MAC), a forged accept's axon
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const session = await openSession(client, hotkey, forging!);
    const raw = (metadata: [string, string][], body: Buffer) =>
      new Promise<Outcome>((resolve) => {
        const sent = new grpc.Metadata();
        for (const [key, value] of metadata) sent.set(key, value);
        const bytes = (b: Buffer) => b;
        const call = client.makeUnaryRequest('/axon.v1.Axon/Dummy', bytes, bytes, body, sent, {}, () => undefined);
        call.on('status', (status: grpc.StatusObject) =>
          resolve({ code: status.code, details: status.details, status_code: terminal(status.metadata)?.statusCode }),
        );
      });
    const body = Buffer.from([0x08, 0x07]); // Dummy{input: 7}
    const first = session.metadata('/axon.v1.Axon/Dummy', body, '12.0');
    const result: Record<string, unknown> = { session_hotkey: session.hotkey };
    result.call = await raw(first, body);
    result.replayed = await raw(first, body);
    result.other_axon = await openSession(client, hotkey, hotkey.address).then(
      () => 'opened',
      (error: Error) => error.message,
    );
    client.close();
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  if (mode === 'window') {
    const held = await connect(Axon, address, { hotkey, axonHotkey: forging! });
    const dummy = held.Dummy.bind(held);
    const calls = await Promise.all(Array.from({ length: 200 }, (_, i) => call(dummy, { input: i })));
    held.close();
    process.stdout.write(JSON.stringify({ right: calls.filter((o, i) => o.reply?.output === 2 * i).length }) + '\n');
    return;
  }
  if (forging !== undefined) {
    const checking = await connect(Axon, address, { hotkey, axonHotkey: forging, verifyAnswers: true });
    const answers: Record<string, Outcome> = {};
    for (const [name, input] of [['impostor', 1], ['unsigned', 2], ['genuine', 3]] as const) {
      answers[name] = await call(checking.Dummy.bind(checking), { input });
    }
    checking.close();
    process.stdout.write(JSON.stringify(answers) + '\n');
    return;
  }

  const client = await connect(Axon, address, { hotkey }); // learns the axon's hotkey from its ping
  const learnt = axonHotkey(client)!;
  const result: Record<string, unknown> = { hotkey: hotkey.address, learnt_hotkey: learnt };
  result.unary = await call(client.Dummy.bind(client), { input: 7 });
  const counts = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, i]));
  result.map = await call(client.Tally.bind(client), { counts });
  result.stream = await story(client, 'once upon a time');
  result.blacklisted = await call(client.Dummy.bind(client), { input: 13 });
  result.unknown = await call(client.Absent.bind(client), { value: 1 });
  result.too_large = await call(client.Said.bind(client), { text: 'x'.repeat(100_000) });
  result.miner_error = await call(client.Said.bind(client), { text: 'hello' });
  const impatient = await connect(Axon, address, { hotkey, axonHotkey: learnt, timeout: 0.5 });
  result.deadline = await call(impatient.Slow.bind(impatient), { seconds: 3 });
  impatient.close();
  const longUuid = await connect(Axon, address, { hotkey, axonHotkey: learnt, uuid: 'u'.repeat(65) });
  result.bad_request = await call(longUuid.Dummy.bind(longUuid), { input: 7 });
  longUuid.close();

  result.concurrency = await burst(client);
  // A new connection, its first 200 calls made before it is up (signed once it is: rule R23).
  const cold = await connect(Axon, address, {
    hotkey,
    axonHotkey: learnt,
    channelOptions: { 'grpc.use_local_subchannel_pool': 1 },
  });
  result.cold_burst = await burst(cold);
  cold.close();
  client.close();

  const verifying = await connect(Axon, address, { hotkey, axonHotkey: learnt, verifyAnswers: true });
  result.signed = await call(verifying.Dummy.bind(verifying), { input: 21 });
  result.signed_stream = await story(verifying, 'not signed');
  verifying.close();

  const other = Hotkey.fromSeed('ed25519', '0x' + '01'.repeat(32)).address;
  const misdirected = await connect(Axon, address, { hotkey, axonHotkey: other });
  result.bad_signature = await call(misdirected.Dummy.bind(misdirected), { input: 7 });
  misdirected.close();
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`drive: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
