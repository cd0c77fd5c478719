"""The gRPC contract in words: written into every emitted ``.proto`` and into
``proto/axon/v1/axon.proto`` (a test keeps the two equal)."""

from __future__ import annotations

#: The contract's name: the protobuf package and the version a client speaks.
CONTRACT_NAME = "axon.v1"
#: How many numbered rules of docs/SPEC.md this axon speaks (R1..R{RULES}); a new rule
#: within axon.v1 only adds to them (see the spec's versioning policy).
RULES = 27
#: The trailer every gRPC answer carries, announcing the contract and its rules.
CONTRACT_TRAILER = "axon-contract"
CONTRACT_ANNOUNCEMENT = f"{CONTRACT_NAME};rules={RULES}"

# The rules the axon's refusals name (docs/SPEC.md).
RULE_METHOD = "R1"
RULE_REQUIRED = "R3"
RULE_SHAPES = "R4"
RULE_TIMEOUT = "R5"
RULE_NAME_VERSION = "R6"
RULE_BODY_HASH = "R7"
RULE_SIGNATURE = "R9"
RULE_SIGNATURE_ENCODING = "R10"
RULE_KEY_TYPE = "R11"
RULE_SS58 = "R12"
RULE_NONCE = "R13"
RULE_REPLAY = "R14"
RULE_BTAUTH = "R21"
RULE_SESSIONS = "R24"
RULE_SESSION_OPEN = "R25"
RULE_SESSION_ACCEPT = "R26"
RULE_SESSION_CALL = "R27"

CONTRACT = """\
CONTRACT axon.v1;rules=27
  The normative spec is docs/SPEC.md of axon-grpc: numbered rules R1..R27,
  test vectors in proto/axon/v1/test_vectors.json. Every answer carries
  the trailer `axon-contract: axon.v1;rules=27`; a refusal's status
  message ends with the rule it applies, e.g. "(rule R7)". This comment
  is a summary of the spec.

SERVICE
  One service, `axon.v1.Axon`, with one method per attached synapse:
  `/axon.v1.Axon/{SynapseName}`. Request and response are the message
  `{SynapseName}`, holding the synapse's user fields numbered from 1 in
  declaration order. A streaming synapse's method returns
  `stream {SynapseName}Stream`: one message per chunk, then one with the
  final fields. Every axon serves `/axon.v1.Axon/Synapse` (message
  `Synapse`, no fields) as a signed ping; its trailers carry the axon's
  hotkey. Enums are numbered by their int values when those are distinct
  and include 0, otherwise 0, 1, 2... in declaration order; value names
  are `{ENUM_NAME}_{MEMBER}`.

REQUEST METADATA (all values are ASCII strings; keys are lowercase)
  bt_header_dendrite_hotkey     caller's hotkey, SS58 (format 42)          required
  bt_header_dendrite_nonce      time.time_ns() at signing, decimal         required
  bt_header_dendrite_uuid       caller instance id, at most 64 characters  required
  bt_header_dendrite_signature  hex of the 64-byte signature; "0x" prefix
                                optional, upper- or lower-case digits      required
  bt_header_dendrite_version    major*1000000 + minor*1000 + patch, decimal
                                (10.5.0 = 10005000); absent: current; below
                                7002000: refused
  bt_header_dendrite_crypto     "sr25519" (default) or "ed25519"
  computed_body_hash            SHA3-256 of the method path, a newline and
                                the request message bytes exactly as sent
                                (see SIGNATURE): 64 lowercase hex digits,
                                no prefix                                  required
  timeout                       seconds the caller waits, decimal, may be a
                                float ("12", "2.5"); must be > 0 (default 12)
  name                          the synapse name; when sent, it must be the
                                method's (else INVALID_ARGUMENT)
  bt_header_input_obj_{field}   optional: base64 of the JSON of a user field
                                value, seen by the miner's blacklist/priority
                                functions before the body is parsed
  bt_header_sign_answer         optional: "1" asks for a signed answer
  A required key that is absent or empty is refused with UNAUTHENTICATED
  "Not Verified with error: Missing {Hotkey|Nonce|Uuid|Signature|Body Hash}".

SIGNATURE
  Serialise the request message once, hash those bytes, send those bytes
  (a stub that serialises again may produce other bytes, e.g. map order).
  computed_body_hash = lowercase hex SHA3-256 over the UTF-8 method path,
  one newline byte and the message bytes:
    sha3_256("/axon.v1.Axon/{SynapseName}" + "\\n" + message_bytes)
  so a call signed for one method fails at any other (INVALID_ARGUMENT
  "body hash does not match ... (rule R7)"; a hash of the message alone:
  "body hash must cover the method path (rule R7)"). The caller signs the
  UTF-8 string
    "{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{computed_body_hash}"
  with its hotkey (sr25519: schnorrkel with signing context "substrate";
  ed25519: RFC 8032), where axon_hotkey is the SS58 of the axon being called.

NONCES
  Nanoseconds since the Unix epoch (19 digits); one in seconds,
  milliseconds or microseconds is refused saying so (rule R13).
  Per key "{dendrite_hotkey}:{uuid}": a nonce is accepted once. A nonce
  newer than the newest accepted one must be at most 30 s in the future
  (the first of a key also at most 4 s + min(timeout, 60 s) old); an older
  one is accepted when it is among the 64 below the newest, within 60 s of
  it, fresh as above, and not seen before (concurrent calls may share a
  uuid). Everything else, replays included, is UNAUTHENTICATED.

RESPONSE
  The response message, plus trailing metadata `bt_header_axon_{field}` for
  each set field of the axon's TerminalInfo (status_code, status_message,
  process_time, version, nonce, uuid, hotkey; signature on errors),
  built from the axon's own state only, never from the request. As the
  legacy axon, it signs error answers only (not overload refusals), with its
  own hotkey's scheme, over
  "{axon_nonce}.{dendrite_hotkey}.{axon_hotkey}.{axon_uuid}" (not the body).

SIGNED ANSWERS
  When the axon signs every answer (Axon(sign_answers=True)) or the request
  carries bt_header_sign_answer "1", a successful unary answer carries
  bt_header_axon_signature over the UTF-8 string
    "answer/1.{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{answer_hash}"
  where nonce, dendrite_hotkey and uuid are the request's (uuid empty for a
  btauth/1 request), axon_hotkey the SS58 of the axon called, and
  answer_hash the SHA3-256 of the response message bytes exactly as received,
  64 lowercase hex digits. Over the legacy HTTP protocol answer_hash is the
  legacy body hash rule applied to every user field of the answer in
  declaration order. Check it with the axon's hotkey; an answer whose
  signature is missing or wrong must not be used. Streamed answers are not
  signed.

STATUS (bt_header_axon_status_code <-> gRPC status)
  200 OK, 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
  404 UNIMPLEMENTED, 408 DEADLINE_EXCEEDED, 413 RESOURCE_EXHAUSTED,
  500 INTERNAL, 503 UNAVAILABLE. Errors carry the message as status details.

SESSIONS (optional: axon-session/1, rules R24-R27)
  An axon that announces the trailer `axon-sessions: axon-session/1`
  serves `/axon.v1.Session/Open` (SessionOpen -> SessionAccept): an
  X25519 exchange signed by both hotkeys; the key is HKDF-SHA256 of the
  shared secret. Later calls carry `axon-session` (id),
  `axon-session-counter` (1, 2, 3...) and `axon-session-mac` (hex
  HMAC-SHA256 over the id, counter, method, body hash and timeout)
  instead of the bt_header_dendrite_* keys. See docs/SESSIONS.md.

DISCOVERY
  Server reflection (grpc.reflection.v1alpha) lists three services:
  axon.v1.Axon, grpc.health.v1.Health and
  grpc.reflection.v1alpha.ServerReflection.
"""

#: Header of an emitted file: what it is, then the contract.
EMITTED_HEADER = (
    "Generated by `axon-grpc proto` from the miner's Synapse classes: the axon.v1.Axon\n"
    "service with one method per synapse. Regenerate rather than edit.\n\n" + CONTRACT
)
