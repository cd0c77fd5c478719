package axonclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// UnverifiedCode is the status of an answer that failed VerifyAnswers (the Python Dendrite's 422).
const UnverifiedCode = codes.DataLoss

// Options say who signs and for which axon.
type Options struct {
	// Hotkey signs every call.
	Hotkey *Hotkey
	// AxonHotkey is the axon's SS58 address (from the registry); Dial learns it from the
	// axon's ping when empty.
	AxonHotkey string
	// Timeout of a call whose context has no deadline (the `timeout` key); default 12 s.
	Timeout time.Duration
	// VerifyAnswers asks for signed answers and refuses (UnverifiedCode) a unary answer whose
	// signature is missing or wrong. Only ed25519 axons can be checked here (no sr25519 in
	// Go's packages); streams, whose answers are not signed, are then refused.
	VerifyAnswers bool
	// UUID is the caller's instance id (bt_header_dendrite_uuid); random by default.
	UUID string
}

// TerminalInfo is what the axon says about itself and the call (its bt_header_axon_* trailers).
type TerminalInfo struct {
	StatusCode    int
	StatusMessage string
	ProcessTime   float64
	Version       int
	Nonce         string
	UUID          string
	Hotkey        string
	Signature     string
	// Contract is the contract the axon announces (its axon-contract trailer, e.g. "axon.v1;rules=27").
	Contract string
	// Verified is true when the answer's signature was checked and holds (VerifyAnswers).
	Verified bool
}

type terminalOption struct {
	grpc.EmptyCallOption
	info *TerminalInfo
}

// Terminal is a call option that fills info with the axon's terminal info once the call ends.
func Terminal(info *TerminalInfo) grpc.CallOption { return terminalOption{info: info} }

func readTerminal(md metadata.MD) TerminalInfo {
	text := func(key string) string {
		if values := md.Get(axonPrefix + key); len(values) > 0 {
			return values[0]
		}
		return ""
	}
	info := TerminalInfo{StatusMessage: text("status_message"), Nonce: text("nonce"), UUID: text("uuid"),
		Hotkey: text("hotkey"), Signature: text("signature")}
	if values := md.Get(contractTrailer); len(values) > 0 {
		info.Contract = values[0]
	}
	info.StatusCode, _ = strconv.Atoi(text("status_code"))
	info.Version, _ = strconv.Atoi(text("version"))
	info.ProcessTime, _ = strconv.ParseFloat(text("process_time"), 64)
	return info
}

func report(opts []grpc.CallOption, info TerminalInfo) {
	for _, opt := range opts {
		if t, ok := opt.(terminalOption); ok && t.info != nil {
			*t.info = info
		}
	}
}

// presigned is a request whose bytes were hashed and signed: the codec sends them as they are.
type presigned struct{ body []byte }

// received keeps an answer's bytes; the interceptor decodes them once checked.
type received struct{ body []byte }

// Codec is the "proto" codec the signed calls use: signed bytes go out unchanged, answers
// are kept as received; any other message is (un)marshalled as protobuf.
type Codec struct{}

func (Codec) Marshal(v interface{}) ([]byte, error) {
	switch m := v.(type) {
	case *presigned:
		return m.body, nil
	case proto.Message:
		return proto.MarshalOptions{Deterministic: true}.Marshal(m)
	}
	return nil, fmt.Errorf("axonclient: cannot marshal %T", v)
}

func (Codec) Unmarshal(data []byte, v interface{}) error {
	switch m := v.(type) {
	case *received:
		m.body = append([]byte(nil), data...)
		return nil
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return fmt.Errorf("axonclient: cannot unmarshal into %T", v)
}

func (Codec) Name() string { return "proto" }

var lastNonce int64

// nextNonce is nanoseconds since the epoch, strictly increasing within the process.
func nextNonce() string {
	for {
		last := atomic.LoadInt64(&lastNonce)
		now := time.Now().UnixNano()
		if now <= last {
			now = last + 1
		}
		if atomic.CompareAndSwapInt64(&lastNonce, last, now) {
			return strconv.FormatInt(now, 10)
		}
	}
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ReplayWindow is the axon's replay window (rule R14): a nonce overtaken by more newer ones of
// its key is refused.
const ReplayWindow = 64

type signer struct {
	order    sync.Mutex
	window   sync.Mutex // guards next, oldest, finished, freed
	next     uint64     // sequence number of the next call signed
	oldest   uint64     // the oldest unfinished call's (next when none is)
	finished map[uint64]bool
	freed    chan struct{} // closed (and replaced) whenever a call finishes
	hotkey   *Hotkey
	axon     atomic.Value // string
	timeout  time.Duration
	verify   bool
	uuid     string
}

type pingKey struct{}

// sign returns the context carrying the signed metadata of a call of method with body.
func (s *signer) sign(ctx context.Context, method string, body []byte) (context.Context, context.CancelFunc, string, string) {
	var cancel context.CancelFunc
	timeout := s.timeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
		if timeout <= 0 {
			timeout = time.Millisecond
		}
		ctx, cancel = context.WithCancel(ctx) // ends with the call (cancel): it frees the call's slot
	} else {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	axon, _ := s.axon.Load().(string)
	signed := SignRequest(s.hotkey, axon, s.uuid, method, body, nextNonce(), timeout, s.verify)
	return metadata.AppendToOutgoingContext(ctx, signed.Metadata...), cancel, signed.Nonce, axon
}

// acquire waits for a slot: a call is signed only when fewer than ReplayWindow calls were signed
// since the oldest one still unfinished, so no call can be overtaken by more than
// ReplayWindow-1 newer nonces of its key, whatever order the calls reach the axon's nonce
// check in (rule R23).
func (s *signer) acquire(ctx context.Context) (uint64, error) {
	for {
		s.window.Lock()
		if s.next-s.oldest < ReplayWindow {
			seq := s.next
			s.next++
			s.window.Unlock()
			return seq, nil
		}
		freed := s.freed
		s.window.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return 0, status.Error(codes.DeadlineExceeded, "axonclient: no signing slot before the deadline")
			}
			return 0, status.Error(codes.Canceled, "axonclient: cancelled while waiting for a signing slot")
		}
	}
}

// release frees the slot of the call numbered seq, once it has ended.
func (s *signer) release(seq uint64) {
	s.window.Lock()
	defer s.window.Unlock()
	s.finished[seq] = true
	for s.finished[s.oldest] {
		delete(s.finished, s.oldest)
		s.oldest++
	}
	close(s.freed)
	s.freed = make(chan struct{})
}

// open signs body for method and starts the call, its request sent. Calls get their slots
// (acquire), are signed and started one at a time, in the order they come; each slot is freed
// when its call ends (its context is done).
func (s *signer) open(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, body []byte,
	streamer grpc.Streamer, opts []grpc.CallOption) (grpc.ClientStream, context.CancelFunc, string, string, error) {
	s.order.Lock()
	defer s.order.Unlock()
	seq, err := s.acquire(ctx)
	if err != nil {
		return nil, func() {}, "", "", err
	}
	ctx, cancel, nonce, axon := s.sign(ctx, method, body)
	stream, err := streamer(ctx, desc, cc, method, append(opts, grpc.ForceCodec(Codec{}))...)
	if err == nil {
		err = stream.SendMsg(&presigned{body})
	}
	if err != nil {
		cancel()
	}
	go func() { // the call's context ends with the call (cancel), its deadline, or its parent
		<-ctx.Done()
		s.release(seq)
	}()
	return stream, cancel, nonce, axon, err
}

type ownStreamKey struct{}

func newStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return cc.NewStream(ctx, desc, method, opts...)
}

func (s *signer) unary(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if ctx.Value(pingKey{}) != nil {
		return invoker(ctx, method, req, reply, cc, append(opts, grpc.ForceCodec(Codec{}))...)
	}
	request, ok := req.(proto.Message)
	target, ok2 := reply.(proto.Message)
	if !ok || !ok2 {
		return status.Errorf(codes.Internal, "axonclient: %s takes protobuf messages", method)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(request)
	if err != nil {
		return status.Errorf(codes.Internal, "axonclient: %v", err)
	}
	var trailer metadata.MD
	// A unary call as grpc-go's own invoke makes it (a stream of one message each way), so that
	// it is started under open's lock; the stream interceptors let it through unchanged.
	stream, cancel, nonce, axon, err := s.open(context.WithValue(ctx, ownStreamKey{}, true), &grpc.StreamDesc{},
		cc, method, body, newStream, append(opts, grpc.Trailer(&trailer)))
	answer := &received{}
	if err == nil {
		defer cancel()
		err = stream.RecvMsg(answer)
	}
	info := readTerminal(trailer)
	defer func() { report(opts, info) }()
	if err != nil {
		return err
	}
	if s.verify {
		if problem := CheckAnswer(nonce, s.hotkey.Address, s.uuid, axon, answer.body, info.Signature); problem != "" {
			return status.Error(UnverifiedCode, "Answer not verified: "+problem)
		}
		info.Verified = true
	}
	return proto.Unmarshal(answer.body, target)
}

// signedStream opens the call at its first SendMsg, once the request bytes are known.
type signedStream struct {
	ctx      context.Context
	signer   *signer
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption
	real     grpc.ClientStream
	cancel   context.CancelFunc
	trailer  metadata.MD
}

var errNotSent = errors.New("axonclient: the stream's request has not been sent")

func (s *signedStream) SendMsg(m interface{}) error {
	if s.real != nil {
		return status.Error(codes.Unimplemented, "axonclient: an axon stream takes one request")
	}
	request, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "axonclient: %s takes protobuf messages", s.method)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(request)
	if err != nil {
		return status.Errorf(codes.Internal, "axonclient: %v", err)
	}
	real, cancel, _, _, err := s.signer.open(s.ctx, s.desc, s.cc, s.method, body, s.streamer,
		append(append([]grpc.CallOption{}, s.opts...), grpc.Trailer(&s.trailer)))
	if err != nil {
		return err
	}
	s.real, s.cancel = real, cancel
	return nil
}

func (s *signedStream) RecvMsg(m interface{}) error {
	if s.real == nil {
		return errNotSent
	}
	err := s.real.RecvMsg(m)
	if err != nil { // io.EOF or the call's status: the trailers are in
		report(s.opts, readTerminal(s.trailer))
		s.cancel()
	}
	return err
}

func (s *signedStream) Header() (metadata.MD, error) {
	if s.real == nil {
		return nil, errNotSent
	}
	return s.real.Header()
}

func (s *signedStream) Trailer() metadata.MD {
	if s.real == nil {
		return nil
	}
	return s.real.Trailer()
}

func (s *signedStream) CloseSend() error {
	if s.real == nil {
		return errNotSent
	}
	return s.real.CloseSend()
}

func (s *signedStream) Context() context.Context {
	if s.real == nil {
		return s.ctx
	}
	return s.real.Context()
}

func (s *signer) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if ctx.Value(ownStreamKey{}) != nil { // a unary call of this signer's
		return streamer(ctx, desc, cc, method, opts...)
	}
	if desc.ClientStreams {
		return nil, status.Error(codes.Unimplemented, "axonclient: an axon has no client-streaming methods")
	}
	if s.verify {
		return nil, status.Error(UnverifiedCode, "Answer not verified: streamed answers are not signed")
	}
	return &signedStream{ctx: ctx, signer: s, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts}, nil
}

func newSigner(o Options) (*signer, error) {
	if o.Hotkey == nil {
		return nil, errors.New("axonclient: Options.Hotkey is required")
	}
	s := &signer{hotkey: o.Hotkey, timeout: o.Timeout, verify: o.VerifyAnswers, uuid: o.UUID,
		finished: map[uint64]bool{}, freed: make(chan struct{})}
	if s.timeout <= 0 {
		s.timeout = defaultTimeoutS * time.Second
	}
	if s.uuid == "" {
		s.uuid = newUUID()
	}
	if o.AxonHotkey != "" {
		if _, err := DecodeHotkey(o.AxonHotkey); err != nil {
			return nil, fmt.Errorf("axonclient: AxonHotkey: %w", err)
		}
	}
	s.axon.Store(o.AxonHotkey)
	return s, nil
}

// DialOptions sign every unary and server-streaming call of the connection (its codec and
// interceptors); o.AxonHotkey is required here (Dial can learn it).
func DialOptions(o Options) ([]grpc.DialOption, error) {
	if o.AxonHotkey == "" {
		return nil, errors.New("axonclient: Options.AxonHotkey is required (or use Dial, which learns it)")
	}
	s, err := newSigner(o)
	if err != nil {
		return nil, err
	}
	return s.dialOptions(), nil
}

func (s *signer) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(s.unary),
		grpc.WithChainStreamInterceptor(s.stream),
	}
}

// Dial connects to the axon at target with signing on (extra adds credentials, e.g.
// grpc.WithInsecure()); when o.AxonHotkey is empty it is learnt from the axon's ping and set.
func Dial(ctx context.Context, target string, o *Options, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	s, err := newSigner(*o)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.DialContext(ctx, target, append(s.dialOptions(), extra...)...)
	if err != nil {
		return nil, err
	}
	if o.AxonHotkey == "" {
		hotkey, err := LearnAxonHotkey(ctx, conn)
		if err != nil {
			conn.Close()
			return nil, err
		}
		s.axon.Store(hotkey)
		o.AxonHotkey = hotkey
	}
	return conn, nil
}

// LearnAxonHotkey reads the axon's hotkey from the trailers of its unsigned ping. The refusal's
// signature is not checked (the hotkey may be sr25519): this proves nothing about who answers;
// where the registry names the axon's hotkey, use that.
func LearnAxonHotkey(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, pingKey{}, true), 10*time.Second)
	defer cancel()
	var trailer metadata.MD
	err := conn.Invoke(ctx, PingMethod, &presigned{}, &received{}, grpc.ForceCodec(Codec{}), grpc.Trailer(&trailer))
	hotkey := readTerminal(trailer).Hotkey
	if hotkey == "" {
		return "", fmt.Errorf("axonclient: the ping's answer names no hotkey (%v)", err)
	}
	if _, err := DecodeHotkey(hotkey); err != nil {
		return "", fmt.Errorf("axonclient: the ping's hotkey: %w", err)
	}
	return hotkey, nil
}
