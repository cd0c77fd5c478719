// The caller's side of `axon-session/1` (docs/SESSIONS.md, rules R24-R27): the SessionOpen and
// SessionAccept messages, the signed transcripts, the X25519 + HKDF-SHA256 key and the call MAC.
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import * as grpc from '@grpc/grpc-js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bodyHash } from './contract.js';
import { Hotkey, toHex, verifySignature } from './keys.js';

export const SESSION_VERSION = 'axon-session/1';
export const ANNOUNCE_TRAILER = 'axon-sessions';
export const OPEN_METHOD = '/axon.v1.Session/Open';
export const SESSION_KEY = 'axon-session';
export const COUNTER_KEY = 'axon-session-counter';
export const MAC_KEY = 'axon-session-mac';
/** The words of the refusals after which a new session will do (R27). */
export const REOPEN_WORDS = 'open a new one';
const MAX_SESSION_ID = 64;
const MAX_MESSAGE_BYTES = 1024;
const encoder = new TextEncoder();

export interface SessionOpen {
  version: string;
  crypto: string;
  dendrite_hotkey: string;
  axon_hotkey: string;
  ephemeral_key: Uint8Array;
  nonce: bigint;
  signature: string;
}

export interface SessionAccept {
  version: string;
  dendrite_hotkey: string;
  axon_hotkey: string;
  dendrite_ephemeral_key: Uint8Array;
  axon_ephemeral_key: Uint8Array;
  nonce: bigint;
  session_id: string;
  lifetime_s: bigint;
  max_calls: bigint;
  window: bigint;
  signature: string;
}

type Kind = 'string' | 'bytes' | 'uint';
const OPEN_FIELDS: [keyof SessionOpen, Kind][] = [
  ['version', 'string'], ['crypto', 'string'], ['dendrite_hotkey', 'string'], ['axon_hotkey', 'string'],
  ['ephemeral_key', 'bytes'], ['nonce', 'uint'], ['signature', 'string'],
];
const ACCEPT_FIELDS: [keyof SessionAccept, Kind][] = [
  ['version', 'string'], ['dendrite_hotkey', 'string'], ['axon_hotkey', 'string'],
  ['dendrite_ephemeral_key', 'bytes'], ['axon_ephemeral_key', 'bytes'], ['nonce', 'uint'],
  ['session_id', 'string'], ['lifetime_s', 'uint'], ['max_calls', 'uint'], ['window', 'uint'], ['signature', 'string'],
];

function varint(value: bigint): number[] {
  const out: number[] = [];
  while (value > 0x7fn) {
    out.push(Number(value & 0x7fn) | 0x80);
    value >>= 7n;
  }
  out.push(Number(value));
  return out;
}

function encode(message: object, fields: [string, Kind][]): Uint8Array {
  const out: number[] = [];
  fields.forEach(([name, kind], index) => {
    const value = (message as Record<string, unknown>)[name];
    const number = BigInt(index + 1);
    if (kind === 'uint') {
      if ((value as bigint) !== 0n) out.push(...varint(number << 3n), ...varint(value as bigint));
      return;
    }
    const raw = kind === 'string' ? encoder.encode(value as string) : (value as Uint8Array);
    if (raw.length > 0) out.push(...varint((number << 3n) | 2n), ...varint(BigInt(raw.length)), ...raw);
  });
  return Uint8Array.from(out);
}

function readVarint(data: Uint8Array, at: number): [bigint, number] {
  let value = 0n;
  for (let i = at, shift = 0n; i < Math.min(at + 10, data.length); i++, shift += 7n) {
    value |= BigInt(data[i]! & 0x7f) << shift;
    if (!(data[i]! & 0x80)) return [value, i + 1];
  }
  throw new Error('truncated or overlong varint');
}

function decode(data: Uint8Array, fields: [string, Kind][]): Record<string, unknown> {
  if (data.length > MAX_MESSAGE_BYTES) throw new Error(`message larger than ${MAX_MESSAGE_BYTES} bytes`);
  const values: Record<string, unknown> = {};
  for (const [name, kind] of fields) values[name] = kind === 'uint' ? 0n : kind === 'string' ? '' : new Uint8Array();
  let at = 0;
  while (at < data.length) {
    let tag: bigint;
    [tag, at] = readVarint(data, at);
    const wire = Number(tag & 7n);
    const known = fields[Number(tag >> 3n) - 1];
    let value: bigint | Uint8Array;
    if (wire === 0) {
      [value, at] = readVarint(data, at);
    } else if (wire === 2) {
      let length: bigint;
      [length, at] = readVarint(data, at);
      if (BigInt(at) + length > BigInt(data.length)) throw new Error('truncated field');
      value = data.subarray(at, at + Number(length));
      at += Number(length);
    } else if (wire === 1 || wire === 5) {
      at += wire === 1 ? 8 : 4;
      if (at > data.length) throw new Error('truncated field');
      continue;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
    if (known === undefined) continue;
    const [name, kind] = known;
    if ((kind === 'uint') !== (wire === 0)) throw new Error(`field ${name} has the wrong wire type`);
    if (kind === 'string') {
      try {
        values[name] = new TextDecoder('utf-8', { fatal: true }).decode(value as Uint8Array);
      } catch {
        throw new Error(`field ${name} is not UTF-8`);
      }
    } else {
      values[name] = kind === 'bytes' ? Uint8Array.from(value as Uint8Array) : value;
    }
  }
  return values;
}

export const encodeOpen = (open: SessionOpen): Uint8Array => encode(open, OPEN_FIELDS);
export const encodeAccept = (accept: SessionAccept): Uint8Array => encode(accept, ACCEPT_FIELDS);
export const decodeAccept = (data: Uint8Array): SessionAccept => decode(data, ACCEPT_FIELDS) as unknown as SessionAccept;

/** What the caller signs (R25). */
export function openTranscript(open: SessionOpen): string {
  const { version, crypto, dendrite_hotkey, axon_hotkey, ephemeral_key, nonce } = open;
  return ['axon-session/1 open', version, crypto, dendrite_hotkey, axon_hotkey, toHex(ephemeral_key), String(nonce)].join('\n');
}

/** What the axon signs (R26). */
export function acceptTranscript(a: SessionAccept): string {
  return [
    'axon-session/1 accept', a.version, a.dendrite_hotkey, a.axon_hotkey, toHex(a.dendrite_ephemeral_key),
    toHex(a.axon_ephemeral_key), String(a.nonce), a.session_id, String(a.lifetime_s), String(a.max_calls),
    String(a.window),
  ].join('\n');
}

/** Which echoed field of `accept` is not the one `open` sent, or null. */
export function echoProblem(open: SessionOpen, accept: SessionAccept): string | null {
  const echoes: [string, string, string][] = [
    ['version', open.version, accept.version],
    ['dendrite_hotkey', open.dendrite_hotkey, accept.dendrite_hotkey],
    ['axon_hotkey', open.axon_hotkey, accept.axon_hotkey],
    ['dendrite_ephemeral_key', toHex(open.ephemeral_key), toHex(accept.dendrite_ephemeral_key)],
    ['nonce', String(open.nonce), String(accept.nonce)],
  ];
  for (const [name, sent, echoed] of echoes) if (sent !== echoed) return `${name} is not the one sent`;
  return null;
}

/** X25519 of `secret` and `peer`; throws for a key of the wrong size or of low order. */
export function sharedSecret(secret: Uint8Array, peer: Uint8Array): Uint8Array {
  if (peer.length !== 32) throw new Error('an X25519 public key has 32 bytes');
  let shared: Uint8Array;
  try {
    shared = x25519.getSharedSecret(secret, peer);
  } catch {
    throw new Error('the X25519 public key is of low order');
  }
  if (shared.every((byte) => byte === 0)) throw new Error('the X25519 public key is of low order');
  return shared;
}

/** The HKDF salt: SHA-256 of the open transcript, a newline and the accept transcript. */
export const transcriptHash = (open: SessionOpen, accept: SessionAccept): Uint8Array =>
  sha256(encoder.encode(`${openTranscript(open)}\n${acceptTranscript(accept)}`));

/** The session key: HKDF-SHA256 of the X25519 secret, salted with the transcripts' hash. */
export function sessionKey(secret: Uint8Array, open: SessionOpen, accept: SessionAccept): Uint8Array {
  const ikm = sharedSecret(secret, accept.axon_ephemeral_key);
  return hkdf(sha256, ikm, transcriptHash(open, accept), encoder.encode('axon-session/1 call'), 32);
}

/** What a session call's MAC covers (R27); `timeout` is the `timeout` key's text, or null when not sent. */
export function macMessage(sessionId: string, counter: bigint | number, method: string, hash: string, timeout: string | null): string {
  return `axon-session/1 call\n${sessionId}\n${counter}\n${method}\n${hash}\n${timeout ?? ''}`;
}

export function callMac(key: Uint8Array, sessionId: string, counter: bigint | number, method: string, hash: string, timeout: string | null): string {
  return toHex(hmac(sha256, key, encoder.encode(macMessage(sessionId, counter, method, hash, timeout))));
}

/** A session opened with one axon: its id, key and terms, and the next counter. */
export class ClientSession {
  private counter = 0n;
  readonly opened = Date.now();
  readonly expires: number;

  constructor(
    readonly id: string,
    readonly key: Uint8Array,
    readonly hotkey: string,
    readonly axonHotkey: string,
    lifetimeSeconds: number,
    readonly maxCalls: bigint,
  ) {
    this.expires = this.opened + lifetimeSeconds * 1000;
  }

  /** Whether to keep using it: not within a minute (or a tenth of its life) of its end, calls left. */
  fresh(now = Date.now()): boolean {
    const margin = Math.min(60_000, (this.expires - this.opened) / 10);
    return now < this.expires - margin && this.counter < this.maxCalls;
  }

  /** The metadata of the next call of `method` with `body` (the message bytes as sent) and
   *  `timeout` (the `timeout` key's text, or null: not sent). */
  metadata(method: string, body: Uint8Array, timeout: string | null): [string, string][] {
    this.counter += 1n;
    const mac = callMac(this.key, this.id, this.counter, method, bodyHash(method, body), timeout);
    const out: [string, string][] = [[SESSION_KEY, this.id], [COUNTER_KEY, String(this.counter)], [MAC_KEY, mac]];
    if (timeout !== null) out.push(['timeout', timeout]);
    return out;
  }
}

/** A signed SessionOpen to `axonHotkey` and the ephemeral secret to keep for the accept. */
export function openRequest(
  hotkey: Hotkey,
  axonHotkey: string,
  ephemeralSecret: Uint8Array = x25519.utils.randomSecretKey(),
  nonce: bigint = BigInt(Date.now()) * 1_000_000n,
): { open: SessionOpen; secret: Uint8Array } {
  const open: SessionOpen = {
    version: SESSION_VERSION, crypto: hotkey.crypto, dendrite_hotkey: hotkey.address, axon_hotkey: axonHotkey,
    ephemeral_key: x25519.getPublicKey(ephemeralSecret), nonce, signature: '',
  };
  open.signature = '0x' + toHex(hotkey.sign(openTranscript(open)));
  return { open, secret: ephemeralSecret };
}

/** The session an axon's answer to `open` opens, once the axon's signature (by the hotkey the
 *  open named) and every echoed field check; throws otherwise (R26). */
export function acceptSession(open: SessionOpen, secret: Uint8Array, answer: Uint8Array): ClientSession {
  let problem: string | null;
  let accept: SessionAccept | undefined;
  let key: Uint8Array | undefined;
  try {
    accept = decodeAccept(answer);
    problem = echoProblem(open, accept);
  } catch (error) {
    problem = (error as Error).message;
  }
  if (problem === null && (accept!.session_id === '' || accept!.session_id.length > MAX_SESSION_ID)) {
    problem = 'the session id is missing or too long';
  }
  if (problem === null && !(accept!.lifetime_s > 0n && accept!.max_calls > 0n)) {
    problem = 'the session has no lifetime or no calls';
  }
  if (problem === null && !verifySignature(open.axon_hotkey, acceptTranscript(accept!), accept!.signature)) {
    problem = "the axon's signature does not verify";
  }
  if (problem === null) {
    try {
      key = sessionKey(secret, open, accept!);
    } catch (error) {
      problem = (error as Error).message;
    }
  }
  if (problem !== null) throw new SessionOpenFailed(`session accept not verified: ${problem}`);
  return new ClientSession(accept!.session_id, key!, open.dendrite_hotkey, open.axon_hotkey, Number(accept!.lifetime_s), accept!.max_calls);
}

/** An open that was refused, failed, or whose accept did not verify. */
export class SessionOpenFailed extends Error {}

/** Whether a refusal's message says the session is gone and a new one will do. */
export const needsReopen = (details: string | undefined): boolean => (details ?? '').includes(REOPEN_WORDS);

const identity = (bytes: Buffer): Buffer => bytes;
const bare: grpc.Interceptor = (options, nextCall) => new grpc.InterceptingCall(nextCall(options));

/** Opens a session with the axon at the other end of `client` whose hotkey is `axonHotkey`
 *  (`/axon.v1.Session/Open`, none of the client's interceptors); rejects with SessionOpenFailed
 *  when the axon refuses or its accept does not verify. */
export function openSession(client: grpc.Client, hotkey: Hotkey, axonHotkey: string, timeoutSeconds = 10): Promise<ClientSession> {
  const { open, secret } = openRequest(hotkey, axonHotkey);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      OPEN_METHOD, identity, identity, Buffer.from(encodeOpen(open)), new grpc.Metadata(),
      { deadline: Date.now() + timeoutSeconds * 1000, interceptors: [bare] },
      (error, answer) => {
        if (error) reject(new SessionOpenFailed(`session open refused: ${error.code} ${error.details}`));
        else {
          try {
            resolve(acceptSession(open, secret, answer!));
          } catch (failure) {
            reject(failure);
          }
        }
      },
    );
  });
}
