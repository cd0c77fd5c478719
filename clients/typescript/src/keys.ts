// Hotkeys (sr25519 and ed25519), SS58 addresses and signature checks, as the axon reads them.
import { ed25519 } from '@noble/curves/ed25519.js';
import { blake2b } from '@noble/hashes/blake2.js';
import { base58 } from '@scure/base';
import * as sr25519 from '@scure/sr25519';

export type Crypto = 'sr25519' | 'ed25519';

/** The SS58 network format Bittensor uses. */
export const SS58_FORMAT = 42;
const SS58_PREFIX = new TextEncoder().encode('SS58PRE');
const MAX_ADDRESS_CHARS = 50;
const RESERVED_FORMATS = new Set([46, 47]);

export class InvalidAddress extends Error {}

function checksum(data: Uint8Array): Uint8Array {
  const input = new Uint8Array(SS58_PREFIX.length + data.length);
  input.set(SS58_PREFIX);
  input.set(data, SS58_PREFIX.length);
  return blake2b(input, { dkLen: 64 }).subarray(0, 2);
}

function formatPrefix(format: number): Uint8Array {
  if (!Number.isInteger(format) || format < 0 || format > 16383 || RESERVED_FORMATS.has(format)) {
    throw new RangeError(`invalid ss58 format ${format}; expected 0..16383 except 46 and 47`);
  }
  if (format < 64) return Uint8Array.of(format);
  return Uint8Array.of(((format & 0b1111_1100) >> 2) | 0b0100_0000, (format >> 8) | ((format & 0b11) << 6));
}

/** The canonical SS58 address of a 32-byte public key. */
export function ss58Encode(publicKey: Uint8Array, format = SS58_FORMAT): string {
  if (publicKey.length !== 32) throw new RangeError(`public key must be 32 bytes, got ${publicKey.length}`);
  const prefix = formatPrefix(format);
  const body = new Uint8Array(prefix.length + 32);
  body.set(prefix);
  body.set(publicKey, prefix.length);
  const out = new Uint8Array(body.length + 2);
  out.set(body);
  out.set(checksum(body), body.length);
  return base58.encode(out);
}

/** The public key and format of an SS58 address; throws InvalidAddress, also for a
 *  non-canonical one (a two-byte prefix for a format below 64) and, unless `expectedFormat`
 *  is null, for another format than Bittensor's (42). */
export function ss58Decode(
  address: string,
  expectedFormat: number | null = SS58_FORMAT,
): { publicKey: Uint8Array; format: number } {
  if (typeof address !== 'string' || address.length === 0) throw new InvalidAddress('invalid SS58 address: empty');
  if (address.length > MAX_ADDRESS_CHARS) throw new InvalidAddress('invalid SS58 address: wrong length');
  let raw: Uint8Array;
  try {
    raw = base58.decode(address);
  } catch {
    throw new InvalidAddress('invalid SS58 address: invalid base58 character');
  }
  if (raw.length === 0) throw new InvalidAddress('invalid SS58 address: wrong length');
  const first = raw[0]!;
  let prefixLength: number;
  let format: number;
  if (first < 64) {
    prefixLength = 1;
    format = first;
  } else if (first < 128 && raw.length >= 2) {
    const second = raw[1]!;
    prefixLength = 2;
    format = ((first & 0b0011_1111) << 2) | (second >> 6) | ((second & 0b0011_1111) << 8);
  } else {
    throw new InvalidAddress('invalid SS58 address: invalid format prefix');
  }
  if (raw.length !== prefixLength + 32 + 2) throw new InvalidAddress('invalid SS58 address: wrong length');
  const body = raw.subarray(0, raw.length - 2);
  const sum = checksum(body);
  if (sum[0] !== raw[raw.length - 2] || sum[1] !== raw[raw.length - 1]) {
    throw new InvalidAddress('invalid SS58 address: checksum mismatch');
  }
  if (RESERVED_FORMATS.has(format)) throw new InvalidAddress('invalid SS58 address: reserved format');
  if (prefixLength === 2 && format < 64) {
    throw new InvalidAddress(`invalid SS58 address: not canonical (format ${format} takes the one-byte prefix)`);
  }
  if (expectedFormat !== null && format !== expectedFormat) {
    throw new InvalidAddress('invalid SS58 address: wrong format');
  }
  return { publicKey: body.slice(prefixLength), format };
}

/** Bytes of a hex string, "0x" prefix optional, either case; throws on anything else. */
export function fromHex(value: string): Uint8Array {
  const digits = value.startsWith('0x') || value.startsWith('0X') ? value.slice(2) : value;
  if (digits.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(digits)) throw new TypeError('not a hex string');
  return Uint8Array.from(Buffer.from(digits, 'hex'));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Whether `signature` (64 bytes, or hex) is `address`'s over `message`. With no `crypto`,
 *  sr25519 then ed25519 are tried (an address does not say its key's scheme). */
export function verifySignature(
  address: string,
  message: Uint8Array | string,
  signature: Uint8Array | string,
  crypto?: Crypto,
): boolean {
  let publicKey: Uint8Array;
  let raw: Uint8Array;
  try {
    publicKey = ss58Decode(address).publicKey;
    raw = typeof signature === 'string' ? fromHex(signature) : signature;
  } catch {
    return false;
  }
  if (raw.length !== 64) return false;
  const bytes = typeof message === 'string' ? new TextEncoder().encode(message) : message;
  const schemes: Crypto[] = crypto ? [crypto] : ['sr25519', 'ed25519'];
  return schemes.some((scheme) => {
    try {
      return scheme === 'sr25519'
        ? sr25519.verify(bytes, raw, publicKey)
        : ed25519.verify(raw, bytes, publicKey, { zip215: false });
    } catch {
      return false;
    }
  });
}

/** A caller's hotkey: signs the axon's messages with sr25519 (Bittensor wallets) or ed25519. */
export class Hotkey {
  readonly publicKey: Uint8Array;
  /** The SS58 address: the caller's identity at the axon. */
  readonly address: string;

  private constructor(
    readonly crypto: Crypto,
    private readonly secret: Uint8Array,
    format: number,
  ) {
    this.publicKey = crypto === 'sr25519' ? sr25519.getPublicKey(secret) : ed25519.getPublicKey(secret);
    this.address = ss58Encode(this.publicKey, format);
  }

  /** The hotkey of a 32-byte seed (bytes, or hex with or without "0x"): the same key as
   *  Python's `Keypair.create_from_seed(seed, crypto)` and a Bittensor wallet's seed. */
  static fromSeed(crypto: Crypto, seed: Uint8Array | string, format = SS58_FORMAT): Hotkey {
    const raw = typeof seed === 'string' ? fromHex(seed) : seed;
    if (raw.length !== 32) throw new RangeError(`seed must be 32 bytes, got ${raw.length}`);
    if (crypto === 'sr25519') return new Hotkey(crypto, sr25519.secretFromSeed(raw), format);
    if (crypto === 'ed25519') return new Hotkey(crypto, Uint8Array.from(raw), format);
    throw new TypeError(`unsupported crypto ${String(crypto)}; expected sr25519 or ed25519`);
  }

  /** A new hotkey from a random seed. */
  static generate(crypto: Crypto = 'sr25519'): Hotkey {
    return Hotkey.fromSeed(crypto, globalThis.crypto.getRandomValues(new Uint8Array(32)));
  }

  /** The 64-byte signature of a UTF-8 message (sr25519 signing context "substrate"). */
  sign(message: Uint8Array | string): Uint8Array {
    const bytes = typeof message === 'string' ? new TextEncoder().encode(message) : message;
    return this.crypto === 'sr25519' ? sr25519.sign(this.secret, bytes) : ed25519.sign(bytes, this.secret);
  }
}
