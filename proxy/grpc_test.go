package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The gRPC tests run grpc-go's own test service (interop/grpc_testing,
// generated code shipped in the module) on both ends of the proxy.

const (
	echoInitialKey  = "x-grpc-test-echo-initial"
	echoTrailingKey = "x-grpc-test-echo-trailing-bin"
	grpcMaxMsg      = 32 << 20
)

// grpcService is a TestService after the interop server: it echoes the
// metadata the interop cases send, answers the statuses it is asked for,
// and can hold a call until its context ends, reporting how it ended.
type grpcService struct {
	testgrpc.UnimplementedTestServiceServer
	hold  bool             // EmptyCall and FullDuplexCall wait for the context to end
	ended chan heldCall    // one value per held call, when its context ended
	first chan struct{}    // FullDuplexCall: closed-or-sent after the first response
	seen  chan metadata.MD // EmptyCall: the incoming metadata
}

type heldCall struct {
	err         error
	deadline    time.Time
	hasDeadline bool
}

func newGRPCService() *grpcService {
	return &grpcService{ended: make(chan heldCall, 4), first: make(chan struct{}, 4), seen: make(chan metadata.MD, 4)}
}

func echoMetadata(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(echoInitialKey); len(v) > 0 {
		grpc.SetHeader(ctx, metadata.Pairs(echoInitialKey, v[0]))
	}
	if v := md.Get(echoTrailingKey); len(v) > 0 {
		grpc.SetTrailer(ctx, metadata.Pairs(echoTrailingKey, v[0]))
	}
}

func (s *grpcService) wait(ctx context.Context) error {
	<-ctx.Done()
	dl, ok := ctx.Deadline()
	s.ended <- heldCall{err: ctx.Err(), deadline: dl, hasDeadline: ok}
	return status.FromContextError(ctx.Err()).Err()
}

func (s *grpcService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	select {
	case s.seen <- md:
	default:
	}
	if s.hold {
		return nil, s.wait(ctx)
	}
	echoMetadata(ctx)
	return &testpb.Empty{}, nil
}

func (s *grpcService) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if st := in.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	echoMetadata(ctx)
	return &testpb.SimpleResponse{Payload: payload(int(in.GetResponseSize()))}, nil
}

func (s *grpcService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range in.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(int(p.GetSize()))}); err != nil {
			return err
		}
	}
	return nil
}

func (s *grpcService) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	sum := 0
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(sum)})
		}
		if err != nil {
			return err
		}
		sum += len(in.GetPayload().GetBody())
	}
}

func (s *grpcService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	echoMetadata(stream.Context())
	for n := 0; ; n++ {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if s.hold {
				return s.wait(stream.Context())
			}
			return err
		}
		if st := in.GetResponseStatus(); st != nil && st.GetCode() != 0 {
			return status.Error(codes.Code(st.GetCode()), st.GetMessage())
		}
		for _, p := range in.GetResponseParameters() {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(int(p.GetSize()))}); err != nil {
				return err
			}
		}
		if n == 0 && s.hold {
			s.first <- struct{}{}
			return s.wait(stream.Context())
		}
	}
}

func payload(n int) *testpb.Payload {
	return &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: bytes.Repeat([]byte{'g'}, n)}
}

// startGRPCOrigin serves svc with grpc-go on loopback, over h2c or (with a
// CA) TLS, and returns the Peer to reach it.
func startGRPCOrigin(t *testing.T, svc *grpcService, ca *testCA) *Peer {
	t.Helper()
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(grpcMaxMsg), grpc.MaxSendMsgSize(grpcMaxMsg)}
	if ca != nil {
		cert := ca.issue(t, "origin.test", "127.0.0.1")
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	}
	srv := grpc.NewServer(opts...)
	testgrpc.RegisterTestServiceServer(srv, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	if ca != nil {
		return &Peer{Addr: ln.Addr().String(), Protocol: H2, TLS: true, RootCAs: ca.pool, SNI: "origin.test"}
	}
	return &Peer{Addr: ln.Addr().String(), Protocol: H2C}
}

// grpcProxy starts a proxy to peer: an h2c listener, or a TLS one when ca
// is set, and returns a grpc-go connection to it.
func grpcProxy(t *testing.T, peer *Peer, ca *testCA) *grpc.ClientConn {
	t.Helper()
	lc := ListenerConfig{Name: "h2c", H2C: true}
	creds := insecure.NewCredentials()
	if ca != nil {
		certs, err := NewCertStoreFromCerts([]tls.Certificate{ca.issue(t, "proxy.test")})
		if err != nil {
			t.Fatal(err)
		}
		lc = ListenerConfig{Name: "tls", TLS: certs}
		creds = credentials.NewTLS(&tls.Config{RootCAs: ca.pool, ServerName: "proxy.test"})
	}
	p := startProxy(t, routerFor(t, peer), Config{}, lc)
	cc, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(grpcMaxMsg), grpc.MaxCallSendMsgSize(grpcMaxMsg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestGRPCThroughProxy(t *testing.T) {
	ca := newTestCA(t)
	for _, tc := range []struct {
		name           string
		tlsDown, tlsUp bool
	}{
		{"h2c-h2c", false, false},
		{"tls-h2c", true, false},
		{"h2c-tls", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var upCA, downCA *testCA
			if tc.tlsUp {
				upCA = ca
			}
			if tc.tlsDown {
				downCA = ca
			}
			cc := grpcProxy(t, startGRPCOrigin(t, newGRPCService(), upCA), downCA)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			testGRPCCalls(ctx, t, cc)
		})
	}
}

// testGRPCCalls runs the interop cases that need no special server.
func testGRPCCalls(ctx context.Context, t *testing.T, cc *grpc.ClientConn) {
	c := testgrpc.NewTestServiceClient(cc)
	t.Run("empty_unary", func(t *testing.T) {
		if _, err := c.EmptyCall(ctx, &testpb.Empty{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("large_unary", func(t *testing.T) {
		for _, n := range []int{271828, 16 << 20} { // 16 MiB each way streams through 32 KiB buffers
			resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: int32(n), Payload: payload(n)})
			if err != nil {
				t.Fatal(err)
			}
			if got := len(resp.GetPayload().GetBody()); got != n {
				t.Fatalf("response payload %d bytes, want %d", got, n)
			}
		}
	})
	t.Run("server_streaming", func(t *testing.T) {
		sizes := []int32{31415, 9, 2653, 58979}
		req := &testpb.StreamingOutputCallRequest{}
		for _, s := range sizes {
			req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: s})
		}
		stream, err := c.StreamingOutputCall(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				if i != len(sizes) {
					t.Fatalf("%d responses, want %d", i, len(sizes))
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(resp.GetPayload().GetBody()); got != int(sizes[i]) {
				t.Fatalf("response %d: %d bytes, want %d", i, got, sizes[i])
			}
		}
	})
	t.Run("client_streaming", func(t *testing.T) {
		stream, err := c.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{27182, 8, 1828, 45904} {
			if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: payload(n)}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil || resp.GetAggregatedPayloadSize() != 74922 {
			t.Fatalf("aggregated %d, %v; want 74922", resp.GetAggregatedPayloadSize(), err)
		}
	})
	t.Run("ping_pong", func(t *testing.T) {
		stream, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int32{31415, 9, 2653, 58979} {
			req := &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: n}}, Payload: payload(int(n))}
			if err := stream.Send(req); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil || len(resp.GetPayload().GetBody()) != int(n) {
				t.Fatalf("pong of %d: %d bytes, %v", n, len(resp.GetPayload().GetBody()), err)
			}
		}
		stream.CloseSend()
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
	})
	t.Run("empty_stream", func(t *testing.T) {
		stream, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stream.CloseSend()
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("empty stream: %v", err)
		}
	})
	t.Run("custom_metadata", func(t *testing.T) {
		md := metadata.Pairs(echoInitialKey, "test_initial_metadata_value", echoTrailingKey, "\xab\xab\xab")
		var header, trailer metadata.MD
		_, err := c.UnaryCall(metadata.NewOutgoingContext(ctx, md), &testpb.SimpleRequest{ResponseSize: 314159, Payload: payload(271828)},
			grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		if v := header.Get(echoInitialKey); len(v) != 1 || v[0] != "test_initial_metadata_value" {
			t.Fatalf("initial metadata %v", header)
		}
		if v := trailer.Get(echoTrailingKey); len(v) != 1 || v[0] != "\xab\xab\xab" {
			t.Fatalf("trailing metadata %v", trailer)
		}
		// The same over a bidi stream, where the trailer follows data.
		stream, err := c.FullDuplexCall(metadata.NewOutgoingContext(ctx, md))
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 314159}}})
		stream.CloseSend()
		for {
			if _, err := stream.Recv(); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
				break
			}
		}
		if v := stream.Trailer().Get(echoTrailingKey); len(v) != 1 || v[0] != "\xab\xab\xab" {
			t.Fatalf("stream trailing metadata %v", stream.Trailer())
		}
	})
	t.Run("status_code_and_message", func(t *testing.T) {
		for _, msg := range []string{"test status message", "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"} {
			_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: 2, Message: msg}})
			if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != msg {
				t.Fatalf("unary: got %v %q, want Unknown %q", st.Code(), st.Message(), msg)
			}
			stream, err := c.FullDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			stream.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: 2, Message: msg}})
			stream.CloseSend()
			_, err = stream.Recv()
			if st := status.Convert(err); st.Code() != codes.Unknown || st.Message() != msg {
				t.Fatalf("stream: got %v %q, want Unknown %q", st.Code(), st.Message(), msg)
			}
		}
	})
	t.Run("unimplemented", func(t *testing.T) {
		// Both answers are trailers-only responses made by the upstream.
		if _, err := c.UnimplementedCall(ctx, &testpb.Empty{}); status.Code(err) != codes.Unimplemented {
			t.Fatalf("unimplemented method: %v", err)
		}
		uc := testgrpc.NewUnimplementedServiceClient(cc)
		if _, err := uc.UnimplementedCall(ctx, &testpb.Empty{}); status.Code(err) != codes.Unimplemented {
			t.Fatalf("unimplemented service: %v", err)
		}
	})
}

// rawGRPC sends one gRPC call with an empty message through an HTTP/2
// client that enforces no deadline of its own, so what comes back is what
// the proxy answered.
func rawGRPC(t *testing.T, addr, method string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+method, bytes.NewReader([]byte{0, 0, 0, 0, 0}))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// checkTrailersOnly asserts a proxy-made gRPC status: HTTP 200,
// application/grpc, no body, grpc-status code in the head.
func checkTrailersOnly(t *testing.T, resp *http.Response, body []byte, code codes.Code) {
	t.Helper()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc" || len(body) != 0 {
		t.Fatalf("status %d, content-type %q, %d body bytes; want 200 application/grpc, none", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	if got := resp.Header.Get("Grpc-Status"); got != strconv.Itoa(int(code)) {
		t.Fatalf("grpc-status %q (message %q), want %d", got, resp.Header.Get("Grpc-Message"), code)
	}
	if msg := resp.Header.Get("Grpc-Message"); msg == "" || strings.Contains(msg, "127.0.0.1") {
		t.Fatalf("grpc-message %q: want a short text naming no upstream", msg)
	}
}

// deadPeer returns a loopback address nothing listens on.
func deadPeer(t *testing.T) *Peer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return &Peer{Addr: addr, Protocol: H2C}
}

func TestGRPCProxyUnavailable(t *testing.T) {
	p := startProxy(t, routerFor(t, deadPeer(t)), Config{Retries: -1}, ListenerConfig{Name: "h2c", H2C: true})
	resp, body := rawGRPC(t, p.addr, "/grpc.testing.TestService/EmptyCall", nil)
	checkTrailersOnly(t, resp, body, codes.Unavailable)

	cc, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = testgrpc.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.HasPrefix(st.Message(), "proxy: 502") {
		t.Fatalf("got %v %q, want Unavailable from the proxy", st.Code(), st.Message())
	}

	// A plain HTTP request to the same dead peer still gets the text page.
	r, text := mustGet(t, h1Client(), "http://"+p.addr+"/")
	if r.StatusCode != http.StatusBadGateway || !strings.HasPrefix(text, "502") {
		t.Fatalf("plain request: %d %q", r.StatusCode, text)
	}
}

func TestGRPCTimeoutDeadlineExceeded(t *testing.T) {
	svc := newGRPCService()
	svc.hold = true
	p := startProxy(t, routerFor(t, startGRPCOrigin(t, svc, nil)), Config{}, ListenerConfig{Name: "h2c", H2C: true})

	// The proxy enforces grpc-timeout itself: this client has no deadline.
	start := time.Now()
	resp, body := rawGRPC(t, p.addr, "/grpc.testing.TestService/EmptyCall", http.Header{"Grpc-Timeout": {"300m"}})
	elapsed := time.Since(start)
	checkTrailersOnly(t, resp, body, codes.DeadlineExceeded)
	if elapsed < 300*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("answered after %s, want about 300ms", elapsed)
	}
	md := <-svc.seen
	if v := md.Get("grpc-timeout"); len(v) > 0 {
		d, ok := parseGRPCTimeout(v[0])
		if !ok || d > 300*time.Millisecond || d < 100*time.Millisecond {
			t.Fatalf("upstream got grpc-timeout %q, want at most 300m", v[0])
		}
	}
	select {
	case h := <-svc.ended:
		if !h.hasDeadline {
			t.Fatal("upstream call had no deadline: grpc-timeout not forwarded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream call not ended after the deadline")
	}

	// Without grpc-timeout, the configured response header timeout answers
	// DEADLINE_EXCEEDED too.
	peer := startGRPCOrigin(t, svc, nil)
	peer.Timeouts.ResponseHeader = 200 * time.Millisecond
	p2 := startProxy(t, routerFor(t, peer), Config{Retries: -1}, ListenerConfig{Name: "h2c", H2C: true})
	resp, body = rawGRPC(t, p2.addr, "/grpc.testing.TestService/EmptyCall", nil)
	checkTrailersOnly(t, resp, body, codes.DeadlineExceeded)
	<-svc.seen
	<-svc.ended

	// And end to end with grpc-go's own deadline.
	cc, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := testgrpc.NewTestServiceClient(cc).EmptyCall(ctx, &testpb.Empty{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
}

func TestGRPCCancelPropagates(t *testing.T) {
	ca := newTestCA(t)
	for _, tlsUp := range []bool{false, true} {
		name := "h2c"
		var upCA *testCA
		if tlsUp {
			name, upCA = "h2", ca
		}
		t.Run(name, func(t *testing.T) {
			svc := newGRPCService()
			svc.hold = true
			client := testgrpc.NewTestServiceClient(grpcProxy(t, startGRPCOrigin(t, svc, upCA), nil))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := client.FullDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 10}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatal(err)
			}
			<-svc.first
			cancel() // RST_STREAM to the proxy, which must reset the upstream stream
			select {
			case h := <-svc.ended:
				if !errors.Is(h.err, context.Canceled) {
					t.Fatalf("upstream context ended with %v, want canceled", h.err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("upstream never saw the cancellation")
			}
		})
	}
}

func TestGRPCTimeoutFormat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true}, {"2M", 2 * time.Minute, true}, {"3S", 3 * time.Second, true},
		{"100m", 100 * time.Millisecond, true}, {"5u", 5 * time.Microsecond, true}, {"99999999n", 99999999, true},
		{"", 0, false}, {"m", 0, false}, {"123456789S", 0, false}, {"10x", 0, false}, {"-1S", 0, false}, {"+1S", 0, false},
	} {
		got, ok := parseGRPCTimeout(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parse %q = %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, d := range []time.Duration{1, 99999999, 100000000, 1500 * time.Millisecond, 40 * time.Hour, 1 << 62} {
		s := formatGRPCTimeout(d)
		got, ok := parseGRPCTimeout(s)
		if !ok || got < d && d < 1<<62 {
			t.Errorf("format %v = %q, parsed back %v %v", d, s, got, ok)
		}
	}
	if got := grpcPercentEncode("a%b\tc☺"); got != "a%25b%09c%E2%98%BA" {
		t.Errorf("percent-encoded %q", got)
	}
}

// TestGRPCTimeoutAfterHead: a grpc-timeout that expires once the response
// head has gone to the client ends the stream with trailers carrying
// DEADLINE_EXCEEDED, as README promises, after the messages relayed so far.
// Before, the stream was reset with INTERNAL_ERROR, which grpc-go reports
// as INTERNAL to a client that relied on the header (an origin that
// ignores the deadline, here one that streams a message every 20 ms).
func TestGRPCTimeoutAfterHead(t *testing.T) {
	msg := []byte{0, 0, 0, 0, 1, 'x'}
	origin := startOrigin(t, originH2C, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(200)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			w.Write(msg)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}))
	p := startProxy(t, routerFor(t, origin), Config{}, ListenerConfig{Name: "h2c", H2C: true})
	resp, body := rawGRPC(t, p.addr, "/grpc.testing.TestService/StreamingOutputCall", http.Header{"Grpc-Timeout": {"200m"}})
	if resp.StatusCode != 200 || len(body) == 0 || len(body)%len(msg) != 0 {
		t.Fatalf("status %d, %d body bytes; want 200 and whole messages", resp.StatusCode, len(body))
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != strconv.Itoa(int(codes.DeadlineExceeded)) {
		t.Fatalf("trailer grpc-status %q (message %q), want %d", got, resp.Trailer.Get("Grpc-Message"), codes.DeadlineExceeded)
	}
}
