package wire_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/wire"
)

// recTracer records the calls and handlers it was told of. The trace
// context a call sends is "tp-<n>" with state "st-<n>".
type recTracer struct {
	mu       sync.Mutex
	calls    []string            // "addr method"
	callEnds []error             // one per ended call span
	handlers []wire.TraceContext // what each handler's call carried
	hEnds    map[string]error    // by the traceparent the call carried
}

type spanKey struct{}

func (rt *recTracer) StartCall(ctx context.Context, addr, method string) (context.Context, wire.TraceContext, func(error)) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.calls = append(rt.calls, addr+" "+method)
	n := len(rt.calls)
	tc := wire.TraceContext{Parent: fmt.Sprintf("tp-%d", n), State: fmt.Sprintf("st-%d", n)}
	return ctx, tc, func(err error) {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		rt.callEnds = append(rt.callEnds, err)
	}
}

func (rt *recTracer) StartHandler(ctx context.Context, method string, tc wire.TraceContext) (context.Context, func(error)) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.handlers = append(rt.handlers, tc)
	return context.WithValue(ctx, spanKey{}, tc.Parent), func(err error) {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		if rt.hEnds == nil {
			rt.hEnds = map[string]error{}
		}
		rt.hEnds[tc.Parent] = err
	}
}

func (rt *recTracer) counts() (calls, callEnds, handlers, hEnds int) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return len(rt.calls), len(rt.callEnds), len(rt.handlers), len(rt.hEnds)
}

// TestTraceContextTravels: a unary call and a stream carry the caller's
// trace context to the handler, whose context holds the handler's span;
// both sides' spans end, the failed call's with its error.
func TestTraceContextTravels(t *testing.T) {
	ct, st := &recTracer{}, &recTracer{}
	_, srv, cl, _ := pair(t, wire.ServerConfig{Tracer: st}, wire.ClientConfig{Tracer: ct})
	srv.Handle("span", func(ctx context.Context, _ []byte) ([]byte, error) {
		v, _ := ctx.Value(spanKey{}).(string)
		return []byte(v), nil
	})
	srv.HandleStream("body", func(ctx context.Context, _ []byte, w io.Writer) error {
		v, _ := ctx.Value(spanKey{}).(string)
		_, err := io.WriteString(w, v)
		return err
	})
	out, err := cl.CallRaw(ctxT(t, 5*time.Second), "srv:1", "span", nil)
	if err != nil || string(out) != "tp-1" {
		t.Fatalf("unary: %q, %v; want the handler's span under tp-1", out, err)
	}
	rd, err := cl.CallStream(ctxT(t, 5*time.Second), "srv:1", "body", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rd)
	rd.Close()
	if err != nil || string(b) != "tp-2" {
		t.Fatalf("stream: %q, %v", b, err)
	}
	if err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "fail", nil, nil); err == nil {
		t.Fatal("fail succeeded")
	}
	waitFor(t, 5*time.Second, "3 handler spans ended", func() bool { _, _, _, he := st.counts(); return he == 3 })
	waitFor(t, 5*time.Second, "3 call spans ended", func() bool { _, ce, _, _ := ct.counts(); return ce == 3 })
	ct.mu.Lock()
	defer ct.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	want := []wire.TraceContext{{Parent: "tp-1", State: "st-1"}, {Parent: "tp-2", State: "st-2"}, {Parent: "tp-3", State: "st-3"}}
	for i, tc := range want {
		if st.handlers[i] != tc {
			t.Fatalf("handler %d got %+v, want %+v", i, st.handlers[i], tc)
		}
	}
	if ct.callEnds[0] != nil || ct.callEnds[1] != nil || ct.callEnds[2] == nil {
		t.Fatalf("call span ends %v: want nil, nil, an error", ct.callEnds)
	}
	if st.hEnds["tp-1"] != nil || st.hEnds["tp-2"] != nil || st.hEnds["tp-3"] == nil {
		t.Fatalf("handler span ends %v: want nil, nil, an error", st.hEnds)
	}
}

// TestUntracedCallsUnchanged: without a Tracer a handler's span gets no
// trace context, and a server Tracer still sees the call.
func TestUntracedCallsUnchanged(t *testing.T) {
	st := &recTracer{}
	_, _, cl, _ := pair(t, wire.ServerConfig{Tracer: st}, wire.ClientConfig{})
	if err := cl.Call(ctxT(t, 5*time.Second), "srv:1", "echo", echoReq{"x"}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "handler span", func() bool { _, _, h, _ := st.counts(); return h == 1 })
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.handlers[0] != (wire.TraceContext{}) {
		t.Fatalf("untraced call carried %+v", st.handlers[0])
	}
}

// TestOlderServerGetsNoTrace: a server of the version before trace
// context (it reads the call header's flags but knows no trace field, so
// it takes the traceparent for the method) answers the first traced call
// "unknown method"; the client sends it again without the trace context
// and sends none on that connection after, so the call succeeds.
func TestOlderServerGetsNoTrace(t *testing.T) {
	addr, traced := olderServer(t)
	cl, err := wire.NewClient(wire.ClientConfig{Tracer: &recTracer{}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 3 {
		out, err := cl.CallRaw(ctxT(t, 5*time.Second), addr, "echo", []byte("hi"))
		if err != nil || string(out) != "hi" {
			t.Fatalf("call %d: %q, %v", i, out, err)
		}
	}
	if n := traced(); n != 1 {
		t.Fatalf("%d calls arrived with the trace flag, want 1 (then none)", n)
	}
	_, err = cl.CallRaw(ctxT(t, 5*time.Second), addr, "nope", nil)
	if !errors.Is(err, wire.ErrUnknownMethod) {
		t.Fatalf("unknown method: %v", err)
	}
}

// olderServer serves "echo" as a wire server before trace context did:
// the method's length byte right after the fixed call header, whatever
// the flags say. It returns its address and how many calls had flag bit 1.
func olderServer(t *testing.T) (string, func() int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	traced := 0
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serveOlder(c, func(flags byte) {
					mu.Lock()
					defer mu.Unlock()
					if flags&2 != 0 {
						traced++
					}
				})
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return traced }
}

func serveOlder(c net.Conn, seen func(flags byte)) {
	br := bufio.NewReader(c)
	if b, err := br.ReadByte(); err != nil || b != wire.ProtoRPC {
		return
	}
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		p := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(br, p); err != nil || p[0] != 5 {
			return
		}
		id, q := p[1:9], p[9:]
		seen(q[0])
		ml := int(q[17])
		method, body := string(q[18:18+ml]), q[18+ml:]
		var out []byte
		if method == "echo" {
			out = append(append([]byte{2}, id...), body...)
		} else {
			msg := fmt.Sprintf("wire: no unary handler for %q", method)
			out = append(append(append([]byte{3}, id...), 1), msg...)
		}
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(out)))
		if _, err := c.Write(append(frame, out...)); err != nil {
			return
		}
	}
}
