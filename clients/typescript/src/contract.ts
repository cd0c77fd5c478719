// The strings the axon hashes and signs (the contract in the emitted .proto's header).
import { sha3_256 } from '@noble/hashes/sha3.js';
import { type Hotkey, toHex, verifySignature } from './keys.js';

/** `bt_header_dendrite_version`: the protocol of Bittensor SDK 10.5.0. */
export const PROTOCOL_VERSION = '10005000';
/** The service every axon serves; a method per synapse. */
export const SERVICE = 'axon.v1.Axon';
/** The ping: refused without a signature, its trailers carry the axon's hotkey. */
export const PING_PATH = `/${SERVICE}/Synapse`;
export const AXON_PREFIX = 'bt_header_axon_';
export const DENDRITE_PREFIX = 'bt_header_dendrite_';
export const SIGN_ANSWER_HEADER = 'bt_header_sign_answer';
/** The trailer naming the contract an axon speaks (`axon.v1;rules=N`, docs/SPEC.md R22). */
export const CONTRACT_TRAILER = 'axon-contract';

/** `computed_body_hash`: hex SHA3-256 of the method path, a newline and the message bytes as sent. */
export function bodyHash(methodPath: string, body: Uint8Array): string {
  return toHex(sha3_256.create().update(new TextEncoder().encode(methodPath + '\n')).update(body).digest());
}

/** What an answer's signature covers: hex SHA3-256 of the response message bytes as received. */
export function answerHash(body: Uint8Array): string {
  return toHex(sha3_256(body));
}

/** What the caller signs: `{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}`. */
export function requestMessage(nonce: string, hotkey: string, axonHotkey: string, uuid: string, hash: string): string {
  return `${nonce}.${hotkey}.${axonHotkey}.${uuid}.${hash}`;
}

/** What the axon signs to vouch for an answer (`uuid` is empty for btauth/1). */
export function answerMessage(nonce: string, hotkey: string, axonHotkey: string, uuid: string, hash: string): string {
  return `answer/1.${nonce}.${hotkey}.${axonHotkey}.${uuid}.${hash}`;
}

/** What the axon signs on an error answer: `{axon_nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}`
 *  (`dendrite_hotkey` is `None` when the request named none, as the ping's). */
export function responseMessage(axonNonce: string, hotkey: string, axonHotkey: string, axonUuid: string): string {
  return `${axonNonce}.${hotkey}.${axonHotkey}.${axonUuid}`;
}

/** What a signed request carries: its `computed_body_hash`, the signed message and the metadata. */
export interface SignedRequest {
  nonce: string;
  bodyHash: string;
  signedMessage: string;
  signature: string;
  metadata: [string, string][];
}

export interface RequestFields {
  hotkey: Hotkey;
  axonHotkey: string;
  uuid: string;
  /** The method path, `/axon.v1.Axon/{Synapse}`. */
  method: string;
  /** The request message bytes exactly as sent. */
  body: Uint8Array;
  /** Nanoseconds since the Unix epoch, decimal. */
  nonce: string;
  /** Seconds (the `timeout` key). */
  timeout: number;
  signAnswer?: boolean;
}

/** Hash, sign and list the metadata of one request (the legacy `bt_header_*` scheme). */
export function signRequest(fields: RequestFields): SignedRequest {
  const { hotkey, axonHotkey, uuid, method, body, nonce } = fields;
  const hash = bodyHash(method, body);
  const signedMessage = requestMessage(nonce, hotkey.address, axonHotkey, uuid, hash);
  const signature = '0x' + toHex(hotkey.sign(signedMessage));
  const metadata: [string, string][] = [
    [DENDRITE_PREFIX + 'hotkey', hotkey.address],
    [DENDRITE_PREFIX + 'nonce', nonce],
    [DENDRITE_PREFIX + 'uuid', uuid],
    [DENDRITE_PREFIX + 'signature', signature],
    [DENDRITE_PREFIX + 'version', PROTOCOL_VERSION],
    [DENDRITE_PREFIX + 'crypto', hotkey.crypto],
    ['computed_body_hash', hash],
    ['timeout', String(fields.timeout)],
    ['name', method.slice(method.lastIndexOf('/') + 1)],
  ];
  if (fields.signAnswer) metadata.push([SIGN_ANSWER_HEADER, '1']);
  return { nonce, bodyHash: hash, signedMessage, signature, metadata };
}

/** Null when `signature` is `axonHotkey`'s `answer/1` signature over the answer `body` to the
 *  request (`nonce`, `hotkey`, `uuid`), else why not. */
export function checkAnswer(
  request: { nonce: string; hotkey: string; uuid: string },
  axonHotkey: string,
  body: Uint8Array,
  signature: string | undefined,
): string | null {
  if (!signature) return 'the axon did not sign its answer';
  const message = answerMessage(request.nonce, request.hotkey, axonHotkey, request.uuid, answerHash(body));
  return verifySignature(axonHotkey, message, signature) ? null : 'answer signature mismatch';
}
