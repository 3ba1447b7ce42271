package h2

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/pingora-go/pingora-go/proxy/internal/hostile"
)

// rejects records what Config.OnReject was told.
type rejects struct {
	mu      sync.Mutex
	reasons []string
}

func (r *rejects) add(reason string, _ error) {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason)
	r.mu.Unlock()
}

func (r *rejects) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reasons
	r.reasons = nil
	return out
}

func dialRaw(t *testing.T, addr string) *hostile.H2Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c, err := hostile.NewH2Conn(nc, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var validHead = hostile.Fields(":method", "GET", ":scheme", "https", ":path", "/ok", ":authority", "proxy.test")

// TestMalformedHeadsRefused: every malformed head of the shared list is
// reset with PROTOCOL_ERROR before a handler runs, reported to OnReject
// once under its reason (those refused by x/net's Framer included, which
// pins framerReason to the Framer's messages), and the connection then
// serves a valid request.
func TestMalformedHeadsRefused(t *testing.T) {
	var ran atomic.Int32
	rej := &rejects{}
	s := serve(t, Config{OnReject: rej.add}, func(st *Stream) {
		if st.Path != "/ok" {
			ran.Add(1)
		}
		echo(st)
	})
	for _, tc := range hostile.H2Malformed {
		t.Run(tc.Name, func(t *testing.T) {
			c := dialRaw(t, s.addr)
			id, err := c.Send(tc.Fields, tc.Split)
			if err != nil {
				t.Fatal(err)
			}
			o, err := c.Await(id)
			if err != nil || !o.Reset || o.Code != http2.ErrCodeProtocol {
				t.Fatalf("got %v (%v), want RST_STREAM PROTOCOL_ERROR", o, err)
			}
			if got := rej.take(); len(got) != 1 || got[0] != tc.Reason {
				t.Fatalf("reported %q, want [%s]", got, tc.Reason)
			}
			id, _ = c.Send(validHead, false)
			if o, err := c.Await(id); err != nil || o.Status != "200" {
				t.Fatalf("valid request after: %v %v", o, err)
			}
		})
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("a handler ran for %d malformed requests", n)
	}
}

// TestEdgeHeadsAccepted: the valid edge cases reach the handler with the
// path and authority an HTTP/1.1 upstream will be given, and nothing is
// reported.
func TestEdgeHeadsAccepted(t *testing.T) {
	rej := &rejects{}
	type seen struct{ path, host string }
	got := make(chan seen, 1)
	s := serve(t, Config{OnReject: rej.add}, func(st *Stream) {
		got <- seen{st.Path, st.Authority}
		echo(st)
	})
	c := dialRaw(t, s.addr)
	for _, tc := range hostile.H2Accepted {
		id, err := c.Send(tc.Fields, tc.Split)
		if err != nil {
			t.Fatal(err)
		}
		o, err := c.Await(id)
		if err != nil || o.Status != "200" {
			t.Fatalf("%s: %v %v", tc.Name, o, err)
		}
		if g := <-got; g.path != tc.Path || !sameAuthority("https", g.host, tc.Host) {
			t.Fatalf("%s: handler saw path %q authority %q, want %q %q", tc.Name, g.path, g.host, tc.Path, tc.Host)
		}
	}
	if r := rej.take(); len(r) != 0 {
		t.Fatalf("reported %q", r)
	}
}

// TestMalformedTrailersRefused: trailers are held to the same field rules.
func TestMalformedTrailersRefused(t *testing.T) {
	rej := &rejects{}
	s := serve(t, Config{OnReject: rej.add}, echo)
	for _, tc := range []struct {
		name, field, value, reason string
	}{
		{"trailing space", "x-t", "v ", "invalid_field_value"},
		{"pseudo-header", ":path", "/x", "invalid_pseudo_header"},
		{"connection-specific", "transfer-encoding", "chunked", "connection_specific_field"},
	} {
		fr, _ := rawConn(t, s.addr)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a"), EndHeaders: true})
		fr.WriteData(1, false, []byte("body"))
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlock(tc.field, tc.value), EndStream: true, EndHeaders: true})
		code, conn := awaitReset(t, fr, 1)
		if conn || code != http2.ErrCodeProtocol {
			t.Fatalf("%s: code %v (connection %v), want stream PROTOCOL_ERROR", tc.name, code, conn)
		}
		if got := rej.take(); len(got) != 1 || got[0] != tc.reason {
			t.Fatalf("%s: reported %q, want [%s]", tc.name, got, tc.reason)
		}
	}
}

// TestOversizeHeadsReported: a head over MaxHeaderListSize or MaxHeaders
// (answered 431) is reported as header_too_large or too_many_fields.
func TestOversizeHeadsReported(t *testing.T) {
	rej := &rejects{}
	s := serve(t, Config{MaxHeaderListSize: 1024, MaxHeaders: 8, OnReject: rej.add}, echo)
	many, big := slices.Clone(validHead), slices.Clone(validHead)
	for i := range 9 {
		many = append(many, hostile.Field{Name: fmt.Sprintf("x-f%d", i), Value: "v"})
	}
	for i := range 6 { // one field over the limit is an HPACK error (x/net ends the connection)
		big = append(big, hostile.Field{Name: fmt.Sprintf("x-b%d", i), Value: strings.Repeat("b", 200)})
	}
	for _, tc := range []struct {
		name   string
		fields []hostile.Field
		reason string
	}{{"too many fields", many, "too_many_fields"}, {"list too large", big, "header_too_large"}} {
		c := dialRaw(t, s.addr)
		id, _ := c.Send(tc.fields, false)
		if o, err := c.Await(id); err != nil || o.Status != "431" {
			t.Fatalf("%s: %v %v, want 431", tc.name, o, err)
		}
		if got := rej.take(); len(got) != 1 || got[0] != tc.reason {
			t.Fatalf("%s: reported %q, want [%s]", tc.name, got, tc.reason)
		}
	}
}
