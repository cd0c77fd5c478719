// The strings the axon hashes and signs (the contract in the emitted .proto's header).
import { sha3_256 } from '@noble/hashes/sha3.js';
import { toHex } from './keys.js';

/** `bt_header_dendrite_version`: the protocol of Bittensor SDK 10.5.0. */
export const PROTOCOL_VERSION = '10005000';
/** The service every axon serves; a method per synapse. */
export const SERVICE = 'axon.v1.Axon';
/** The ping: refused without a signature, its trailers carry the axon's hotkey. */
export const PING_PATH = `/${SERVICE}/Synapse`;
export const AXON_PREFIX = 'bt_header_axon_';
export const DENDRITE_PREFIX = 'bt_header_dendrite_';
export const SIGN_ANSWER_HEADER = 'bt_header_sign_answer';

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
