package wire

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"
)

// TestGoAwayAnswersCallsThatCrossedIt: a call sent as the server's goaway
// was on its way is still answered on that connection (a draining server
// reads on), and the next call dials a new one. Before, goaway failed
// every call in flight on the connection.
func TestGoAwayAnswersCallsThatCrossedIt(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if b, err := br.ReadByte(); err != nil || b != ProtoRPC {
					return
				}
				for {
					f, err := readFrame(br, 1<<20)
					if err != nil {
						return
					}
					// goaway first, then the answer to the call it crossed
					c.Write(appendFrame(nil, frameGoAway, 0, []byte(goAwayDraining)))
					c.Write(appendFrame(nil, frameResponse, f.id, []byte("answer")))
				}
			}()
		}
	}()
	cl, err := NewClient(ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := cl.CallRaw(ctx, l.Addr().String(), "m", nil)
		cancel()
		if err != nil || string(out) != "answer" {
			t.Fatalf("call %d: %q, %v; want its answer", i, out, err)
		}
	}
	if n := len(accepted); n != 2 {
		t.Fatalf("%d connections, want 2 (one per goaway)", n)
	}
}

// TestGoAwayBeforeTheFirstCall: a connection accepted as its server began
// to drain gets goaway before any call; a call that found it retired
// already goes to a new connection (nothing was sent), and one sent before
// the goaway arrived is answered on it. Either way the call succeeds.
func TestGoAwayBeforeTheFirstCall(t *testing.T) {
	for i := range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go serveGoAwayFirst(l)
		cl, err := NewClient(ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := cl.CallRaw(ctx, l.Addr().String(), "m", nil)
		cancel()
		cl.Close()
		l.Close()
		if err != nil || string(out) != "answer" {
			t.Fatalf("client %d: %q, %v; want the answer", i, out, err)
		}
	}
}

// serveGoAwayFirst answers every call with "answer"; its first connection
// gets goaway right after the magic byte, as one accepted by a server
// that has begun to drain.
func serveGoAwayFirst(l net.Listener) {
	for first := true; ; first = false {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func(first bool) {
			defer c.Close()
			br := bufio.NewReader(c)
			if b, err := br.ReadByte(); err != nil || b != ProtoRPC {
				return
			}
			if first {
				c.Write(appendFrame(nil, frameGoAway, 0, []byte(goAwayDraining)))
			}
			for {
				f, err := readFrame(br, 1<<20)
				if err != nil {
					return
				}
				c.Write(appendFrame(nil, frameResponse, f.id, []byte("answer")))
			}
		}(first)
	}
}
