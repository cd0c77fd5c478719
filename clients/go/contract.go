// Package axonclient signs calls to an axon-grpc miner made through ordinary protoc-gen-go-grpc
// stubs: Dial (or DialOptions) adds a codec and interceptors, and axonv1.NewAxonClient(conn)
// works unchanged.
package axonclient

import (
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/sha3"
)

const (
	// ProtocolVersion is bt_header_dendrite_version: the protocol of Bittensor SDK 10.5.0.
	ProtocolVersion = "10005000"
	// PingMethod is refused without a signature; its trailers carry the axon's hotkey.
	PingMethod      = "/axon.v1.Axon/Synapse"
	axonPrefix      = "bt_header_axon_"
	dendritePrefix  = "bt_header_dendrite_"
	signAnswerKey   = "bt_header_sign_answer"
	contractTrailer = "axon-contract"
	defaultTimeoutS = 12
)

// BodyHash is computed_body_hash: hex SHA3-256 of the method path, a newline and the
// message bytes exactly as sent.
func BodyHash(method string, body []byte) string {
	h := sha3.New256()
	h.Write([]byte(method + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// AnswerHash is what an answer's signature covers: hex SHA3-256 of the response bytes as received.
func AnswerHash(body []byte) string {
	sum := sha3.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// RequestMessage is what the caller signs: {nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}.
func RequestMessage(nonce, hotkey, axonHotkey, uuid, bodyHash string) string {
	return nonce + "." + hotkey + "." + axonHotkey + "." + uuid + "." + bodyHash
}

// AnswerMessage is what the axon signs to vouch for an answer (uuid empty for btauth/1).
func AnswerMessage(nonce, hotkey, axonHotkey, uuid, answerHash string) string {
	return "answer/1." + nonce + "." + hotkey + "." + axonHotkey + "." + uuid + "." + answerHash
}

// ResponseMessage is what the axon signs on an error answer (hotkey "None" when the request named none).
func ResponseMessage(axonNonce, hotkey, axonHotkey, axonUUID string) string {
	return axonNonce + "." + hotkey + "." + axonHotkey + "." + axonUUID
}

// Request is what a signed request carries besides its message bytes.
type Request struct {
	Nonce, BodyHash, SignedMessage, Signature string
	// Metadata is the key, value pairs to send (for metadata.AppendToOutgoingContext).
	Metadata []string
}

// SignRequest hashes body for method, signs it with hotkey for the axon axonHotkey, and lists
// the metadata of the call (nonce: nanoseconds since the epoch, decimal; timeout: the `timeout` key).
func SignRequest(hotkey *Hotkey, axonHotkey, uuid, method string, body []byte, nonce string,
	timeout time.Duration, signAnswer bool) Request {
	hash := BodyHash(method, body)
	message := RequestMessage(nonce, hotkey.Address, axonHotkey, uuid, hash)
	signature := "0x" + hex.EncodeToString(hotkey.Sign([]byte(message)))
	pairs := []string{
		dendritePrefix + "hotkey", hotkey.Address,
		dendritePrefix + "nonce", nonce,
		dendritePrefix + "uuid", uuid,
		dendritePrefix + "signature", signature,
		dendritePrefix + "version", ProtocolVersion,
		dendritePrefix + "crypto", hotkey.Crypto(),
		"computed_body_hash", hash,
		"timeout", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64),
		"name", method[strings.LastIndexByte(method, '/')+1:],
	}
	if signAnswer {
		pairs = append(pairs, signAnswerKey, "1")
	}
	return Request{Nonce: nonce, BodyHash: hash, SignedMessage: message, Signature: signature, Metadata: pairs}
}

// CheckAnswer is "" when signature is axonHotkey's answer/1 signature over the answer body to
// the request (nonce, dendrite hotkey, uuid), else why not. Only ed25519 axons can be checked.
func CheckAnswer(nonce, hotkey, uuid, axonHotkey string, body []byte, signature string) string {
	if signature == "" {
		return "the axon did not sign its answer"
	}
	if VerifyEd25519(axonHotkey, []byte(AnswerMessage(nonce, hotkey, axonHotkey, uuid, AnswerHash(body))), signature) {
		return ""
	}
	return "answer signature mismatch (or an sr25519 axon: only ed25519 answers can be checked here)"
}
