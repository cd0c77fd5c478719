package axonclient

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"golang.org/x/crypto/blake2b"
)

// SS58Format is the SS58 network format Bittensor uses.
const SS58Format = 42

const b58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var ss58Pre = []byte("SS58PRE")

// ErrInvalidAddress is wrapped by every SS58 decoding error.
var ErrInvalidAddress = errors.New("invalid SS58 address")

func b58Encode(data []byte) string {
	n := new(big.Int).SetBytes(data)
	radix, mod := big.NewInt(58), new(big.Int)
	var out []byte
	for n.Sign() > 0 {
		n.DivMod(n, radix, mod)
		out = append(out, b58Alphabet[mod.Int64()])
	}
	for _, b := range data {
		if b != 0 {
			break
		}
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

func b58Decode(text string) ([]byte, error) {
	n, radix := new(big.Int), big.NewInt(58)
	zeros := 0
	for zeros < len(text) && text[zeros] == '1' {
		zeros++
	}
	for i := 0; i < len(text); i++ {
		digit := strings.IndexByte(b58Alphabet, text[i])
		if digit < 0 {
			return nil, fmt.Errorf("%w: invalid base58 character", ErrInvalidAddress)
		}
		n.Mul(n, radix).Add(n, big.NewInt(int64(digit)))
	}
	return append(make([]byte, zeros), n.Bytes()...), nil
}

func ss58Checksum(data []byte) []byte {
	sum := blake2b.Sum512(append(append([]byte{}, ss58Pre...), data...))
	return sum[:2]
}

// SS58Encode is the canonical SS58 address of a 32-byte public key in format (0..16383
// except 46 and 47; one prefix byte below 64).
func SS58Encode(publicKey []byte, format int) (string, error) {
	if len(publicKey) != 32 {
		return "", fmt.Errorf("public key must be 32 bytes, got %d", len(publicKey))
	}
	if format < 0 || format > 16383 || format == 46 || format == 47 {
		return "", fmt.Errorf("invalid ss58 format %d", format)
	}
	var body []byte
	if format < 64 {
		body = []byte{byte(format)}
	} else {
		body = []byte{byte((format&0b1111_1100)>>2) | 0b0100_0000, byte(format>>8) | byte((format&0b11)<<6)}
	}
	body = append(body, publicKey...)
	return b58Encode(append(body, ss58Checksum(body)...)), nil
}

// SS58Decode returns the public key and format of an address; it refuses a non-canonical
// address (a two-byte prefix for a format below 64), as the axon does.
func SS58Decode(address string) ([]byte, int, error) {
	if address == "" || len(address) > 50 {
		return nil, 0, fmt.Errorf("%w: wrong length", ErrInvalidAddress)
	}
	raw, err := b58Decode(address)
	if err != nil {
		return nil, 0, err
	}
	if len(raw) == 0 {
		return nil, 0, fmt.Errorf("%w: wrong length", ErrInvalidAddress)
	}
	prefix, format := 1, int(raw[0])
	switch {
	case raw[0] < 64:
	case raw[0] < 128 && len(raw) >= 2:
		prefix = 2
		format = int(raw[0]&0b0011_1111)<<2 | int(raw[1]>>6) | int(raw[1]&0b0011_1111)<<8
	default:
		return nil, 0, fmt.Errorf("%w: invalid format prefix", ErrInvalidAddress)
	}
	if len(raw) != prefix+32+2 {
		return nil, 0, fmt.Errorf("%w: wrong length", ErrInvalidAddress)
	}
	body := raw[:len(raw)-2]
	if !bytes.Equal(ss58Checksum(body), raw[len(raw)-2:]) {
		return nil, 0, fmt.Errorf("%w: checksum mismatch", ErrInvalidAddress)
	}
	if format == 46 || format == 47 {
		return nil, 0, fmt.Errorf("%w: reserved format", ErrInvalidAddress)
	}
	if prefix == 2 && format < 64 {
		return nil, 0, fmt.Errorf("%w: not canonical (format %d takes the one-byte prefix)", ErrInvalidAddress, format)
	}
	return body[prefix:], format, nil
}

// ParseSignature reads hex with an optional "0x"/"0X" prefix, either case, 64 bytes.
func ParseSignature(value string) ([]byte, error) {
	if strings.HasPrefix(value, "0x") || strings.HasPrefix(value, "0X") {
		value = value[2:]
	}
	raw, err := hex.DecodeString(value)
	if err != nil {
		return nil, errors.New("signature is not hex")
	}
	if len(raw) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signature must be %d bytes", ed25519.SignatureSize)
	}
	return raw, nil
}

// DecodeHotkey is the public key of a hotkey address: canonical SS58 in Bittensor's format (42).
func DecodeHotkey(address string) ([]byte, error) {
	publicKey, format, err := SS58Decode(address)
	if err != nil {
		return nil, err
	}
	if format != SS58Format {
		return nil, fmt.Errorf("%w: wrong format", ErrInvalidAddress)
	}
	return publicKey, nil
}

// VerifyEd25519 says whether signature (hex) is address's ed25519 signature over message.
// sr25519 signatures cannot be checked by this package (no sr25519 library is packaged here).
func VerifyEd25519(address string, message []byte, signature string) bool {
	publicKey, err := DecodeHotkey(address)
	if err != nil {
		return false
	}
	raw, err := ParseSignature(signature)
	if err != nil {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(publicKey), message, raw)
}

// Hotkey is a caller's ed25519 hotkey (bt_header_dendrite_crypto "ed25519").
type Hotkey struct {
	key ed25519.PrivateKey
	// Address is the hotkey's SS58 address (format 42): the caller's identity at the axon.
	Address string
}

// HotkeyFromSeed is the ed25519 hotkey of a 32-byte seed (RFC 8032), the same key as
// Python's Keypair.create_from_seed(seed, "ed25519").
func HotkeyFromSeed(seed []byte) (*Hotkey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("seed must be %d bytes, got %d", ed25519.SeedSize, len(seed))
	}
	key := ed25519.NewKeyFromSeed(seed)
	address, err := SS58Encode(key.Public().(ed25519.PublicKey), SS58Format)
	if err != nil {
		return nil, err
	}
	return &Hotkey{key: key, Address: address}, nil
}

// Crypto is the scheme the axon is told (bt_header_dendrite_crypto).
func (h *Hotkey) Crypto() string { return "ed25519" }

// Sign is the 64-byte ed25519 signature of message.
func (h *Hotkey) Sign(message []byte) []byte { return ed25519.Sign(h.key, message) }
