// The kit's test driver: calls a real axon through the generated axonv1 stubs and prints what
// each call got, as JSON (tests/test_client_kits.py asserts on it).
//
//	drive ADDRESS SEED_HEX
//	drive vectors FILE
//	drive forged ADDRESS SEED_HEX AXON_HOTKEY   (a forging server: Dummy 1, 2, 3 with VerifyAnswers)
//	drive window ADDRESS SEED_HEX AXON_HOTKEY   (a holding server: Dummy 0, then 1..199 at once)
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	axonv1 "axon/v1"

	"axonclient"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type outcome struct {
	Code       int              `json:"code"`
	Details    string           `json:"details,omitempty"`
	Reply      map[string]any   `json:"reply,omitempty"`
	StatusCode int              `json:"status_code,omitempty"`
	AxonHotkey string           `json:"axon_hotkey,omitempty"`
	Verified   bool             `json:"verified,omitempty"`
	Chunks     []string         `json:"chunks,omitempty"`
	Completion string           `json:"completion,omitempty"`
	Counts     map[string]int64 `json:"counts,omitempty"`
	Contract   string           `json:"contract,omitempty"`
}

func finish(err error, info axonclient.TerminalInfo, reply map[string]any) outcome {
	s := status.Convert(err)
	result := outcome{Code: int(s.Code()), Details: s.Message(), Reply: reply, StatusCode: info.StatusCode,
		AxonHotkey: info.Hotkey, Verified: info.Verified}
	if err == nil {
		result.Contract = info.Contract
	}
	return result
}

func dummy(ctx context.Context, client axonv1.AxonClient, input int64) outcome {
	var info axonclient.TerminalInfo
	reply, err := client.Dummy(ctx, &axonv1.Dummy{Input: input}, axonclient.Terminal(&info))
	if err != nil {
		return finish(err, info, nil)
	}
	return finish(nil, info, map[string]any{"input": reply.GetInput(), "output": reply.GetOutput()})
}

func story(ctx context.Context, client axonv1.AxonClient, prompt string) outcome {
	var info axonclient.TerminalInfo
	stream, err := client.Story(ctx, &axonv1.Story{Prompt: prompt}, axonclient.Terminal(&info))
	if err != nil {
		return finish(err, info, nil)
	}
	var chunks []string
	completion := ""
	for {
		message, err := stream.Recv()
		if err == io.EOF {
			err = nil
		}
		if err != nil || message == nil {
			result := finish(err, info, nil)
			result.Chunks, result.Completion = chunks, completion
			return result
		}
		if message.Chunk != nil {
			chunks = append(chunks, message.Chunk.Data)
		}
		if message.Final != nil {
			completion = message.Final.GetCompletion()
		}
	}
}

// dummies makes 200 Dummy calls at once, of inputs first..first+199 (after a pause past the first
// call when pause is set, so that it is signed first), and returns what each got.
func dummies(ctx context.Context, client axonv1.AxonClient, first int, pause bool) []outcome {
	calls := make([]outcome, 200)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			calls[i] = dummy(ctx, client, int64(first+i))
		}(i)
		if i == 0 && pause {
			time.Sleep(300 * time.Millisecond)
		}
	}
	wg.Wait()
	return calls
}

// burst makes 200 calls at once on one client: their status codes, how many answers are right, the messages.
func burst(ctx context.Context, client axonv1.AxonClient) map[string]any {
	calls := dummies(ctx, client, 100, false)
	codes, right, details := map[string]int{}, 0, map[string]bool{}
	for i, call := range calls {
		codes[fmt.Sprint(call.Code)]++
		if call.Reply != nil && call.Reply["output"] == int64(2*(100+i)) {
			right++
		}
		if call.Details != "" {
			details[call.Details] = true
		}
	}
	detailList := []string{}
	for text := range details {
		detailList = append(detailList, text)
	}
	return map[string]any{"codes": codes, "right": right, "details": detailList}
}

func dial(ctx context.Context, address string, o *axonclient.Options) (*grpc.ClientConn, axonv1.AxonClient) {
	conn, err := axonclient.Dial(ctx, address, o, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	return conn, axonv1.NewAxonClient(conn)
}

func main() {
	if os.Args[1] == "vectors" {
		runVectors(os.Args[2])
		return
	}
	ctx := context.Background()
	forging, window := os.Args[1] == "forged", os.Args[1] == "window"
	if forging || window {
		os.Args = os.Args[1:]
	}
	address := os.Args[1]
	seed, err := hex.DecodeString(strings.TrimPrefix(os.Args[2], "0x"))
	if err != nil {
		panic(err)
	}
	hotkey, err := axonclient.HotkeyFromSeed(seed)
	if err != nil {
		panic(err)
	}
	result := map[string]any{"hotkey": hotkey.Address}
	if window {
		held := axonclient.Options{Hotkey: hotkey, AxonHotkey: os.Args[3]}
		conn, client := dial(ctx, address, &held)
		calls := dummies(ctx, client, 0, true) // Dummy 0 is signed first
		conn.Close()
		right := 0
		for i, call := range calls {
			if call.Reply != nil && call.Reply["output"] == int64(2*i) {
				right++
			}
		}
		out, _ := json.Marshal(map[string]any{"right": right})
		fmt.Println(string(out))
		return
	}
	if forging {
		checking := axonclient.Options{Hotkey: hotkey, AxonHotkey: os.Args[3], VerifyAnswers: true}
		conn, client := dial(ctx, address, &checking)
		result = map[string]any{"impostor": dummy(ctx, client, 1), "unsigned": dummy(ctx, client, 2), "genuine": dummy(ctx, client, 3)}
		conn.Close()
		out, _ := json.Marshal(result)
		fmt.Println(string(out))
		return
	}

	options := axonclient.Options{Hotkey: hotkey} // the axon's hotkey is learnt from its ping
	conn, client := dial(ctx, address, &options)
	result["learnt_hotkey"] = options.AxonHotkey
	result["unary"] = dummy(ctx, client, 7)

	counts := map[string]int64{}
	for i := 0; i < 40; i++ {
		counts[fmt.Sprintf("k%d", i)] = int64(i)
	}
	var info axonclient.TerminalInfo
	tally, err := client.Tally(ctx, &axonv1.Tally{Counts: counts}, axonclient.Terminal(&info))
	mapped := finish(err, info, nil)
	if err == nil {
		mapped.Reply = map[string]any{"total": tally.GetTotal()}
		mapped.Counts = tally.Counts
	}
	result["map"] = mapped
	result["stream"] = story(ctx, client, "once upon a time")
	result["blacklisted"] = dummy(ctx, client, 13)
	_, err = client.Absent(ctx, &axonv1.Absent{Value: 1}, axonclient.Terminal(&info))
	result["unknown"] = finish(err, info, nil)
	_, err = client.Said(ctx, &axonv1.Said{Text: strings.Repeat("x", 100000)}, axonclient.Terminal(&info))
	result["too_large"] = finish(err, info, nil)
	_, err = client.Said(ctx, &axonv1.Said{Text: "hello"}, axonclient.Terminal(&info))
	result["miner_error"] = finish(err, info, nil)
	impatient := axonclient.Options{Hotkey: hotkey, AxonHotkey: options.AxonHotkey, Timeout: 500 * time.Millisecond}
	impatientConn, impatientClient := dial(ctx, address, &impatient)
	_, err = impatientClient.Slow(ctx, &axonv1.Slow{Seconds: 3}, axonclient.Terminal(&info))
	result["deadline"] = finish(err, info, nil)
	impatientConn.Close()
	longUUID := axonclient.Options{Hotkey: hotkey, AxonHotkey: options.AxonHotkey, UUID: strings.Repeat("u", 65)}
	longConn, longClient := dial(ctx, address, &longUUID)
	result["bad_request"] = dummy(ctx, longClient, 7)
	longConn.Close()

	result["concurrency"] = burst(ctx, client)
	// A new connection, its first 200 calls made at once (started in nonce order: rule R23).
	cold := axonclient.Options{Hotkey: hotkey, AxonHotkey: options.AxonHotkey}
	coldConn, coldClient := dial(ctx, address, &cold)
	result["cold_burst"] = burst(ctx, coldClient)
	coldConn.Close()
	conn.Close()

	verifying := axonclient.Options{Hotkey: hotkey, AxonHotkey: options.AxonHotkey, VerifyAnswers: true}
	conn, client = dial(ctx, address, &verifying)
	result["signed"] = dummy(ctx, client, 21)
	result["signed_stream"] = story(ctx, client, "not signed")
	conn.Close()

	other, _ := axonclient.HotkeyFromSeed(make([]byte, 32))
	misdirected := axonclient.Options{Hotkey: hotkey, AxonHotkey: other.Address}
	conn, client = dial(ctx, address, &misdirected)
	result["bad_signature"] = dummy(ctx, client, 7)
	conn.Close()

	out, _ := json.Marshal(result)
	fmt.Println(string(out))
}
