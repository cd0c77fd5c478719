package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"axonclient"
)

type vectorKey struct{ Name, Crypto, Seed string }

type vectorRequest struct {
	Name, Method, Body, UUID, Signer, Signature string
	Nonce                                       json.Number
	AxonHotkey                                  string     `json:"axon_hotkey"`
	Metadata                                    [][]string `json:"metadata"`
}

type vectorAnswer struct {
	Name    string
	Request struct {
		Nonce          json.Number
		DendriteHotkey string `json:"dendrite_hotkey"`
		UUID           string
	}
	AxonHotkey   string `json:"axon_hotkey"`
	ResponseBody string `json:"response_body"`
	Signer       string
	Signature    string
}

type vectorErrorAnswer struct {
	Name           string
	Trailers       map[string]string
	DendriteHotkey *string `json:"dendrite_hotkey"`
	Signer         string
	Signature      string
}

type vectorFile struct {
	Keys []vectorKey
	SS58 []struct {
		Name, Address string
		PublicKey     string `json:"public_key"`
		Format        int
	}
	Requests     []vectorRequest
	Negative     []vectorRequest
	Answers      []vectorAnswer
	ErrorAnswers []vectorErrorAnswer `json:"error_answers"`
}

func unhex(text string) []byte {
	raw, err := hex.DecodeString(strings.TrimPrefix(text, "0x"))
	if err != nil {
		panic(err)
	}
	return raw
}

func orError(value string, err error) any {
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	return value
}

// runVectors computes, with the kit, every value of the test vectors a client produces or
// checks (sr25519 signatures excepted: null) and prints them as JSON.
func runVectors(path string) {
	text, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	var file vectorFile
	if err := json.Unmarshal(text, &file); err != nil {
		panic(err)
	}
	keys, crypto := map[string]*axonclient.Hotkey{}, map[string]string{}
	out := map[string][]map[string]any{}
	for _, key := range file.Keys {
		crypto[key.Name] = key.Crypto
		if key.Crypto != "ed25519" {
			continue // no sr25519 here
		}
		hotkey, err := axonclient.HotkeyFromSeed(unhex(key.Seed))
		if err != nil {
			panic(err)
		}
		keys[key.Name] = hotkey
		public, _ := axonclient.DecodeHotkey(hotkey.Address)
		out["keys"] = append(out["keys"], map[string]any{"name": key.Name, "public_key": hex.EncodeToString(public), "ss58": hotkey.Address})
	}
	for _, entry := range file.SS58 {
		decoded, err := axonclient.DecodeHotkey(entry.Address)
		encoded, err2 := axonclient.SS58Encode(unhex(entry.PublicKey), entry.Format)
		out["ss58"] = append(out["ss58"], map[string]any{
			"name": entry.Name, "decoded": orError(hex.EncodeToString(decoded), err), "encoded": orError(encoded, err2),
		})
	}
	for i, entry := range append(append([]vectorRequest{}, file.Requests...), file.Negative...) {
		group := "requests"
		if i >= len(file.Requests) {
			group = "negative"
		}
		result := map[string]any{"name": entry.Name}
		timeout, hotkeySent := 12.0, ""
		for _, pair := range entry.Metadata {
			switch pair[0] {
			case "timeout":
				timeout, _ = strconv.ParseFloat(pair[1], 64)
			case "bt_header_dendrite_hotkey":
				hotkeySent = pair[1]
			}
		}
		_, err := axonclient.DecodeHotkey(hotkeySent)
		result["hotkey_sent_decodes"] = err == nil
		result["body_hash"] = axonclient.BodyHash(entry.Method, unhex(entry.Body))
		if signer := keys[entry.Signer]; signer != nil {
			signed := axonclient.SignRequest(signer, entry.AxonHotkey, entry.UUID, entry.Method, unhex(entry.Body),
				entry.Nonce.String(), time.Duration(timeout*float64(time.Second)), false)
			pairs := [][]string{}
			for j := 0; j < len(signed.Metadata); j += 2 {
				pairs = append(pairs, signed.Metadata[j:j+2])
			}
			result["signed_message"], result["signature"], result["metadata"] = signed.SignedMessage, signed.Signature, pairs
			result["own_signature_verifies"] = axonclient.VerifyEd25519(signer.Address, []byte(signed.SignedMessage), signed.Signature)
			result["vector_signature_verifies"] = axonclient.VerifyEd25519(signer.Address, []byte(signed.SignedMessage), entry.Signature)
		}
		out[group] = append(out[group], result)
	}
	other := keys["caller-ed25519"].Address
	for _, entry := range file.Answers {
		body := unhex(entry.ResponseBody)
		tampered := append([]byte{}, body...)
		tampered[len(tampered)-1] ^= 1
		r := entry.Request
		result := map[string]any{
			"name":           entry.Name,
			"answer_hash":    axonclient.AnswerHash(body),
			"signed_message": axonclient.AnswerMessage(r.Nonce.String(), r.DendriteHotkey, entry.AxonHotkey, r.UUID, axonclient.AnswerHash(body)),
		}
		if crypto[entry.Signer] == "ed25519" {
			check := func(axon string, body []byte, signature string) any {
				if problem := axonclient.CheckAnswer(r.Nonce.String(), r.DendriteHotkey, r.UUID, axon, body, signature); problem != "" {
					return problem
				}
				return nil
			}
			result["problem"] = check(entry.AxonHotkey, body, entry.Signature)
			result["tampered_body"] = check(entry.AxonHotkey, tampered, entry.Signature)
			result["other_receiver"] = check(other, body, entry.Signature)
			result["unsigned"] = check(entry.AxonHotkey, body, "")
		}
		out["answers"] = append(out["answers"], result)
	}
	for _, entry := range file.ErrorAnswers {
		t, hotkey := entry.Trailers, "None"
		if entry.DendriteHotkey != nil {
			hotkey = *entry.DendriteHotkey
		}
		message := axonclient.ResponseMessage(t["bt_header_axon_nonce"], hotkey, t["bt_header_axon_hotkey"], t["bt_header_axon_uuid"])
		result := map[string]any{"name": entry.Name, "signed_message": message}
		if crypto[entry.Signer] == "ed25519" {
			result["verifies"] = axonclient.VerifyEd25519(t["bt_header_axon_hotkey"], []byte(message), entry.Signature)
		}
		out["error_answers"] = append(out["error_answers"], result)
	}
	encoded, _ := json.Marshal(out)
	fmt.Println(string(encoded))
}
