// Signed calls on @grpc/grpc-js stubs: `signable` lets a stub send bytes it was given and keep
// the bytes it received; `axonInterceptor` signs each call and reads (and checks) the answer.
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { AXON_PREFIX, CONTRACT_TRAILER, PING_PATH, checkAnswer, responseMessage, signRequest } from './contract.js';
import { Hotkey, ss58Decode, verifySignature } from './keys.js';

const SERIALIZE = Symbol.for('axon-grpc.serialize');
const RAW = Symbol.for('axon-grpc.raw');
const TERMINAL = Symbol.for('axon-grpc.terminal');

/** The gRPC status of an answer that failed verification (the Python Dendrite's 422). */
export const UNVERIFIED_STATUS = grpc.status.DATA_LOSS;

/** What the axon says about itself and the call, from its `bt_header_axon_*` trailers. */
export interface TerminalInfo {
  statusCode?: number;
  statusMessage?: string;
  processTime?: number;
  version?: number;
  nonce?: string;
  uuid?: string;
  hotkey?: string;
  signature?: string;
  ip?: string;
  port?: number;
  /** The contract the axon announces (`axon-contract` trailer, e.g. `axon.v1;rules=27`). */
  contract?: string;
  /** True when the answer's signature was checked and holds (`verifyAnswers`). */
  verified?: boolean;
}

/** Message bytes that go out as they are (a signed call's body). */
class Serialized {
  constructor(readonly bytes: Buffer) {}
}

type Serialize = ((value: unknown) => Buffer) & { [SERIALIZE]?: (value: unknown) => Buffer };

interface MethodLike {
  path: string;
  requestSerialize: Serialize;
  responseDeserialize: (bytes: Buffer) => unknown;
}

function isMethod(value: unknown): value is MethodLike {
  const method = value as MethodLike | null;
  return (
    typeof method === 'object' &&
    method !== null &&
    typeof method.path === 'string' &&
    typeof method.requestSerialize === 'function' &&
    typeof method.responseDeserialize === 'function'
  );
}

/** A copy of a package definition (from @grpc/proto-loader's `loadSync`) whose services send
 *  the bytes the signature covers and keep the bytes of each answer; pass it to
 *  `grpc.loadPackageDefinition` and use the stubs as usual, with `axonInterceptor`. */
export function signable<T extends object>(definition: T): T {
  const copy: Record<string, unknown> = {};
  for (const [name, entry] of Object.entries(definition)) {
    const methods = entry !== null && typeof entry === 'object' ? Object.values(entry) : [];
    if (methods.length === 0 || !methods.every(isMethod)) {
      copy[name] = entry;
      continue;
    }
    const service: Record<string, MethodLike> = {};
    for (const [methodName, method] of Object.entries(entry as Record<string, MethodLike>)) {
      const serialize = method.requestSerialize[SERIALIZE] ?? method.requestSerialize;
      const deserialize = method.responseDeserialize;
      service[methodName] = {
        ...method,
        requestSerialize: Object.assign(
          (value: unknown) => (value instanceof Serialized ? value.bytes : serialize(value)),
          { [SERIALIZE]: serialize },
        ),
        responseDeserialize: (bytes: Buffer) => {
          const value = deserialize(bytes);
          if (value !== null && typeof value === 'object') Object.defineProperty(value, RAW, { value: bytes });
          return value;
        },
      };
    }
    copy[name] = service;
  }
  return copy as T;
}

function first(metadata: grpc.Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return value === undefined ? undefined : value.toString();
}

function readTerminal(metadata: grpc.Metadata): TerminalInfo {
  const text = (field: string) => first(metadata, AXON_PREFIX + field);
  const number = (field: string) => {
    const value = text(field);
    return value === undefined || value === '' || !Number.isFinite(Number(value)) ? undefined : Number(value);
  };
  const info: TerminalInfo = {
    statusCode: number('status_code'),
    statusMessage: text('status_message'),
    processTime: number('process_time'),
    version: number('version'),
    nonce: text('nonce'),
    uuid: text('uuid'),
    hotkey: text('hotkey'),
    signature: text('signature'),
    ip: text('ip'),
    port: number('port'),
    contract: first(metadata, CONTRACT_TRAILER),
  };
  for (const key of Object.keys(info) as (keyof TerminalInfo)[]) if (info[key] === undefined) delete info[key];
  return info;
}

/** The axon's terminal info of a call: from an answer of a signed unary call, from trailers
 *  (a stream's `status.metadata`), or from a `ServiceError` (its `metadata`). */
export function terminal(source: unknown): TerminalInfo | undefined {
  if (source === null || typeof source !== 'object') return undefined;
  const attached = (source as { [TERMINAL]?: TerminalInfo })[TERMINAL];
  if (attached) return attached;
  if (source instanceof grpc.Metadata) return readTerminal(source);
  const metadata = (source as { metadata?: unknown }).metadata;
  return metadata instanceof grpc.Metadata ? readTerminal(metadata) : undefined;
}

/** The bytes an answer was decoded from (answers of stubs made from a `signable` definition). */
export function rawBytes(answer: unknown): Buffer | undefined {
  return answer !== null && typeof answer === 'object' ? (answer as { [RAW]?: Buffer })[RAW] : undefined;
}

export interface SigningOptions {
  /** The caller's hotkey. */
  hotkey: Hotkey;
  /** The axon's SS58 address (from the registry, or `learnAxonHotkey`). */
  axonHotkey: string;
  /** Seconds a call may take when it sets no deadline (the `timeout` key); default 12. */
  timeout?: number;
  /** Ask for signed answers and refuse (`UNVERIFIED_STATUS`) any unary answer whose signature
   *  is missing or wrong; streams, whose answers are not signed, are then refused. */
  verifyAnswers?: boolean;
  /** The caller's instance id (`bt_header_dendrite_uuid`); a random UUID by default. */
  uuid?: string;
}

let lastNonce = 0n;
const clockBase = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** Nanoseconds since the epoch, strictly increasing within this process. */
function nextNonce(): string {
  const now = clockBase + process.hrtime.bigint();
  lastNonce = now > lastNonce ? now : lastNonce + 1n;
  return lastNonce.toString();
}

function unverified(reason: string, metadata: grpc.Metadata): grpc.StatusObject {
  return { code: UNVERIFIED_STATUS, details: `Answer not verified: ${reason}`, metadata };
}

function deadlineMs(deadline: grpc.Deadline): number {
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/** The axon's replay window (rule R14): a nonce overtaken by more newer ones of its key is refused. */
export const REPLAY_WINDOW = 64;

/** The calls of one uuid in signing order: a call is signed only when fewer than REPLAY_WINDOW
 *  calls were signed since the oldest one still unfinished, so no call can be overtaken by more
 *  than REPLAY_WINDOW - 1 newer nonces of its key, whatever order the calls reach the axon's
 *  nonce check in (rule R23). Calls waiting for a slot are signed in the order they were made. */
class SigningWindow {
  private next = 0; // sequence number of the next call signed
  private oldest = 0; // the oldest unfinished call's (next when none is)
  private readonly finished = new Set<number>();
  private readonly waiting: (() => void)[] = [];

  /** Runs `sign` with the call's sequence number once it has a slot; `finish(seq)` frees it. */
  enter(sign: (seq: number) => void): void {
    if (this.waiting.length === 0 && this.next - this.oldest < REPLAY_WINDOW) sign(this.next++);
    else this.waiting.push(() => sign(this.next++));
  }

  finish(seq: number): void {
    this.finished.add(seq);
    while (this.finished.delete(this.oldest)) this.oldest++;
    while (this.waiting.length > 0 && this.next - this.oldest < REPLAY_WINDOW) this.waiting.shift()!();
  }
}

function makeInterceptor(
  options: Omit<SigningOptions, 'axonHotkey'>,
  axonHotkey: () => string,
): grpc.Interceptor {
  const uuid = options.uuid ?? randomUUID();
  const window = new SigningWindow();
  const defaultTimeout = options.timeout ?? 12;
  const verify = options.verifyAnswers === true;
  const hotkey = options.hotkey;
  return (callOptions, nextCall) => {
    const method = callOptions.method_definition;
    const serialize = (method.requestSerialize as Serialize)[SERIALIZE];
    if (serialize === undefined) {
      throw new Error('axon-grpc: make the stub from signable(definition) so the signed bytes are the sent bytes');
    }
    if (method.requestStream) throw new Error('axon-grpc: an axon has no client-streaming methods');
    const forward: grpc.InterceptorOptions = { ...callOptions };
    let timeout = defaultTimeout;
    const deadline = callOptions.deadline;
    if (deadline === undefined || deadline === Infinity) {
      forward.deadline = Date.now() + timeout * 1000;
    } else {
      timeout = Math.max((deadlineMs(deadline) - Date.now()) / 1000, 0.001);
    }
    const unary = !method.responseStream;
    let given = new grpc.Metadata();
    let startNext: ((metadata: grpc.Metadata, listener: grpc.Listener) => void) | undefined;
    let listener: grpc.InterceptingListener | undefined;
    const requester: grpc.Requester = {
      start(metadata, received, next) {
        given = metadata;
        listener = received;
        startNext = next;
      },
      sendMessage(message, next) {
        if (verify && !unary) {
          // Never sent; refused once the caller has its stream (and its handlers) in hand.
          const refusal = unverified('streamed answers are not signed', new grpc.Metadata());
          setImmediate(() => listener?.onReceiveStatus(refusal));
          return;
        }
        const made = Date.now();
        window.enter((seq) => send(message, next, seq, made));
      },
    };
    const send = (message: unknown, next: (message: unknown) => void, seq: number, made: number): void => {
      if (Date.now() > made) timeout = Math.max((deadlineMs(forward.deadline!) - Date.now()) / 1000, 0.001);
      const body = serialize(message);
      const axon = axonHotkey();
      const request = { nonce: nextNonce(), hotkey: hotkey.address, uuid };
      const signed = signRequest({
        ...{ hotkey, axonHotkey: axon, uuid, method: method.path, body },
        ...{ nonce: request.nonce, timeout, signAnswer: verify },
      });
      const metadata = given.clone();
      for (const [key, value] of signed.metadata) metadata.set(key, value);
      let held: { message: unknown; next: (message: unknown) => void } | undefined;
      startNext!(metadata, {
        onReceiveMessage(answer, passOn) {
          if (unary) held = { message: answer, next: passOn };
          else passOn(answer);
        },
        onReceiveStatus(status, passOn) {
          window.finish(seq);
          const info = readTerminal(status.metadata);
          let outcome = status;
          if (held !== undefined) {
            if (verify && status.code === grpc.status.OK) {
              const raw = rawBytes(held.message);
              const problem =
                raw === undefined
                  ? 'the answer bytes were not kept (make the stub from signable())'
                  : checkAnswer(request, axon, raw, info.signature);
              if (problem === null) info.verified = true;
              else outcome = unverified(problem, status.metadata);
            }
            const answer = held.message;
            if (answer !== null && typeof answer === 'object') Object.defineProperty(answer, TERMINAL, { value: info });
            held.next(answer); // a unary call hands its answer on only with an OK status
          }
          passOn(outcome);
        },
      });
      next(new Serialized(body));
    };
    return new grpc.InterceptingCall(nextCall(forward), requester);
  };
}

/** An interceptor that signs every unary and server-streaming call of a stub for one axon:
 *  `new Stub(address, credentials, { interceptors: [axonInterceptor({ hotkey, axonHotkey })] })`. */
export function axonInterceptor(options: SigningOptions): grpc.Interceptor {
  ss58Decode(options.axonHotkey); // an address that does not decode fails here, not per call
  const axonHotkey = options.axonHotkey;
  return makeInterceptor(options, () => axonHotkey);
}

/** The axon's hotkey, read from the trailers of the unsigned ping (`/axon.v1.Axon/Synapse`),
 *  whose refusal the axon signs with that hotkey (checked here). It proves only that the answering
 *  server holds that key: where the registry names the axon's hotkey, prefer that. */
export function learnAxonHotkey(client: grpc.Client, timeoutSeconds = 10): Promise<string> {
  return new Promise((resolve, reject) => {
    const call = client.makeUnaryRequest(
      PING_PATH,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      Buffer.alloc(0),
      new grpc.Metadata(),
      {
        deadline: Date.now() + timeoutSeconds * 1000,
        interceptors: [(options, nextCall) => new grpc.InterceptingCall(nextCall(options))], // none of the client's
      },
      () => undefined,
    );
    call.on('status', (status: grpc.StatusObject) => {
      const info = readTerminal(status.metadata);
      if (!info.hotkey || !info.signature || info.nonce === undefined || info.uuid === undefined) {
        reject(new Error(`axon-grpc: the ping's answer names no signed hotkey (${status.code} ${status.details})`));
        return;
      }
      const message = responseMessage(info.nonce, 'None', info.hotkey, info.uuid);
      if (!verifySignature(info.hotkey, message, info.signature)) {
        reject(new Error(`axon-grpc: the ping's answer is not signed by the hotkey it names (${info.hotkey})`));
        return;
      }
      resolve(info.hotkey);
    });
  });
}

type StubConstructor<C extends grpc.Client> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => C;

export interface ConnectOptions extends Omit<SigningOptions, 'axonHotkey'> {
  /** The axon's SS58 address; learnt from its ping when absent. */
  axonHotkey?: string;
  /** Default: insecure (h2c), as an axon serves without TLS. */
  credentials?: grpc.ChannelCredentials;
  /** Channel options for the stub's constructor. */
  channelOptions?: grpc.ClientOptions;
}

/** A stub of `Stub` (generated from a `signable` definition) for the axon at `address` whose
 *  calls are signed with `options.hotkey`; `axonHotkey(client)` says whom they are signed for. */
export async function connect<C extends grpc.Client>(
  Stub: StubConstructor<C>,
  address: string,
  options: ConnectOptions,
): Promise<C> {
  let axon = options.axonHotkey;
  if (axon !== undefined) ss58Decode(axon);
  const interceptor = makeInterceptor(options, () => axon!);
  const client: C = new Stub(address, options.credentials ?? grpc.credentials.createInsecure(), {
    ...options.channelOptions,
    interceptors: [...(options.channelOptions?.interceptors ?? []), interceptor],
  });
  if (axon === undefined) {
    try {
      axon = await learnAxonHotkey(client);
    } catch (error) {
      client.close();
      throw error;
    }
  }
  AXON_HOTKEYS.set(client, axon);
  return client;
}

const AXON_HOTKEYS = new WeakMap<grpc.Client, string>();

/** The axon hotkey a client made by `connect` signs for. */
export function axonHotkey(client: grpc.Client): string | undefined {
  return AXON_HOTKEYS.get(client);
}
