// Computes, with the kit, every value of proto/axon/v1/test_vectors.json a client produces or
// checks, and prints them as JSON (tests/test_client_kits.py compares them with the file).
//   node vectors.js FILE
import { readFileSync } from 'node:fs';
import {
  type Crypto,
  Hotkey,
  answerHash,
  answerMessage,
  checkAnswer,
  fromHex,
  responseMessage,
  signRequest,
  ss58Decode,
  ss58Encode,
  toHex,
  verifySignature,
  acceptSession,
  acceptTranscript,
  decodeAccept,
  encodeAccept,
  encodeOpen,
  openRequest,
  openTranscript,
  sharedSecret,
  transcriptHash,
} from '../src/index.js';

interface Key { name: string; crypto: Crypto; seed: string }
interface Request {
  name: string; method: string; body: string; nonce: number | string; uuid: string; axon_hotkey: string;
  signer: string; signature: string; metadata: [string, string][];
}
interface Answer {
  name: string; request: { nonce: number | string; dendrite_hotkey: string; uuid: string };
  axon_hotkey: string; response_body: string; signer: string; signature: string;
}
interface ErrorAnswer {
  name: string; trailers: Record<string, string>; dendrite_hotkey: string | null; signer: string; signature: string;
}

const attempt = <T>(f: () => T): T | { error: string } => {
  try {
    return f();
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
};

const file = JSON.parse(readFileSync(process.argv[2]!, 'utf8'));
const keys = new Map((file.keys as Key[]).map((key) => [key.name, Hotkey.fromSeed(key.crypto, key.seed)]));
const out: Record<string, unknown[]> = {};
for (const section of ['keys', 'ss58', 'requests', 'answers', 'error_answers', 'negative']) out[section] = [];

for (const key of file.keys as Key[]) {
  const hotkey = keys.get(key.name)!;
  out.keys!.push({ name: key.name, public_key: toHex(hotkey.publicKey), ss58: hotkey.address });
}
for (const entry of file.ss58 as { name: string; public_key: string; format: number; address: string }[]) {
  const decoded = attempt(() => toHex(ss58Decode(entry.address).publicKey));
  const encoded = attempt(() => ss58Encode(fromHex(entry.public_key), entry.format));
  out.ss58!.push({ name: entry.name, decoded, encoded });
}
for (const entry of [...(file.requests as Request[]), ...(file.negative as Request[])]) {
  const signer = keys.get(entry.signer)!;
  const timeout = Number(entry.metadata.find(([key]) => key === 'timeout')?.[1] ?? 12);
  const signed = signRequest({
    hotkey: signer, axonHotkey: entry.axon_hotkey, uuid: entry.uuid, method: entry.method,
    body: fromHex(entry.body), nonce: String(entry.nonce), timeout,
  });
  const hotkeySent = entry.metadata.find(([key]) => key === 'bt_header_dendrite_hotkey')?.[1] ?? '';
  out[file.requests.includes(entry) ? 'requests' : 'negative']!.push({
    name: entry.name,
    body_hash: signed.bodyHash,
    signed_message: signed.signedMessage,
    signature: signed.signature,
    own_signature_verifies: verifySignature(signer.address, signed.signedMessage, signed.signature, signer.crypto),
    vector_signature_verifies: verifySignature(signer.address, signed.signedMessage, entry.signature, signer.crypto),
    metadata: signed.metadata,
    hotkey_sent_decodes: !('error' in (attempt(() => ss58Decode(hotkeySent)) as object)),
  });
}
for (const entry of file.answers as Answer[]) {
  const { nonce, dendrite_hotkey: hotkey, uuid } = entry.request;
  const request = { nonce: String(nonce), hotkey, uuid };
  const body = fromHex(entry.response_body);
  const tampered = Uint8Array.from(body);
  tampered[tampered.length - 1]! ^= 1;
  out.answers!.push({
    name: entry.name,
    answer_hash: answerHash(body),
    signed_message: answerMessage(request.nonce, request.hotkey, entry.axon_hotkey, request.uuid, answerHash(body)),
    problem: checkAnswer(request, entry.axon_hotkey, body, entry.signature),
    tampered_body: checkAnswer(request, entry.axon_hotkey, tampered, entry.signature),
    other_receiver: checkAnswer(request, keys.get('caller-ed25519')!.address, body, entry.signature),
    unsigned: checkAnswer(request, entry.axon_hotkey, body, undefined),
  });
}
for (const entry of file.error_answers as ErrorAnswer[]) {
  const t = entry.trailers;
  const message = responseMessage(
    t.bt_header_axon_nonce!, entry.dendrite_hotkey ?? 'None', t.bt_header_axon_hotkey!, t.bt_header_axon_uuid!,
  );
  out.error_answers!.push({
    name: entry.name,
    signed_message: message,
    verifies: verifySignature(t.bt_header_axon_hotkey!, message, entry.signature),
  });
}
// axon-session/1: the open, the accept (and forged ones), the key and the call MACs
const [openVector, acceptVector, callsVector] = file.sessions as Record<string, any>[];
const { open, secret } = openRequest(
  keys.get(openVector!.signer)!, openVector!.message.axon_hotkey, fromHex(openVector!.ephemeral_private),
  BigInt(openVector!.message.nonce),
);
const acceptBytes = fromHex(acceptVector!.encoded);
const accept = decodeAccept(acceptBytes);
const refusal = (bytes: Uint8Array) => attempt(() => acceptSession(open, secret, bytes).id);
const altered = (change: (a: ReturnType<typeof decodeAccept>) => void) => {
  const copy = decodeAccept(acceptBytes);
  change(copy);
  return refusal(encodeAccept(copy));
};
const session = acceptSession(open, secret, acceptBytes);
out.sessions = [
  {
    name: openVector!.name,
    encoded: toHex(encodeOpen(open)),
    transcript: openTranscript(open),
    signature: open.signature,
    vector_signature_verifies: verifySignature(open.dendrite_hotkey, openTranscript(open), openVector!.signature, 'ed25519'),
  },
  {
    name: acceptVector!.name,
    reencoded: toHex(encodeAccept(accept)),
    transcript: acceptTranscript(accept),
    signature_verifies: verifySignature(accept.axon_hotkey, acceptTranscript(accept), accept.signature),
    shared_secret: toHex(sharedSecret(secret, accept.axon_ephemeral_key)),
    salt: toHex(transcriptHash(open, accept)),
    key: toHex(session.key),
    session_id: session.id,
    altered_nonce: altered((a) => (a.nonce += 1n)),
    altered_hotkey: altered((a) => (a.dendrite_hotkey = open.axon_hotkey)),
    altered_ephemeral: altered((a) => (a.dendrite_ephemeral_key = a.axon_ephemeral_key)),
    altered_terms: altered((a) => (a.lifetime_s += 1n)),
    wrong_signature: altered((a) => (a.signature = open.signature)),
    garbage: refusal(Uint8Array.of(0x0a, 0xff)),
  },
  {
    name: callsVector!.name,
    calls: (callsVector!.calls as { method: string; body: string; timeout: string | null }[]).map((call) =>
      session.metadata(call.method, fromHex(call.body), call.timeout),
    ),
  },
];
process.stdout.write(JSON.stringify(out) + '\n');
