package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/clock"
	"github.com/pingora-go/pingora-go/proxy/health"
)

// TestStatusForKinds covers StatusFor for every Kind from each Source.
func TestStatusForKinds(t *testing.T) {
	t.Parallel()
	// status from an upstream (or internal) source, and from the client's
	want := map[Kind][2]int{
		KindInternal:               {500, 500},
		KindConnectRefused:         {502, 499},
		KindConnectTimeout:         {504, 408},
		KindConnectError:           {502, 499},
		KindTLSHandshake:           {502, 499},
		KindReadTimeout:            {504, 408},
		KindWriteTimeout:           {504, 408},
		KindConnectionClosed:       {502, 499},
		KindInvalidResponse:        {502, 499},
		KindInvalidRequest:         {400, 400},
		KindBodyTooLarge:           {413, 413},
		KindNoRoute:                {404, 404},
		KindNoHealthyPeer:          {503, 503},
		KindClientCanceled:         {499, 499},
		KindProtocol:               {502, 499},
		KindUpstreamStatus:         {500, 500},
		KindInvalidUpstreamRequest: {500, 500},
		KindPeerBusy:               {503, 503},
		KindLocalResources:         {503, 503},
	}
	if len(want) != len(kindNames) {
		t.Fatalf("%d kinds tested, %d exist", len(want), len(kindNames))
	}
	for k, w := range want {
		for i, src := range []Source{Upstream, Downstream, Internal} {
			exp := w[min(i, 1)]
			if src == Internal {
				exp = w[0]
			}
			err := fmt.Errorf("wrapped: %w", &Error{Kind: k, Source: src, Err: errors.New("x")})
			if got := StatusFor(err); got != exp {
				t.Errorf("StatusFor(%s from %s) = %d, want %d", k, src, got, exp)
			}
		}
	}
}

// TestDialOutOfDescriptors: a dial that fails because this process is out
// of descriptors (EMFILE at its open-file limit, ENFILE) is not the peer's
// failure: 503 local_resources, not retried, and no verdict on the peer's
// passive health. Blamed on the peer (connect_error), one request's
// attempts ejected a healthy peer at a node's limit (reproduced with the
// binary under prlimit), and every client got 503 for the cool-off after
// descriptors were free again.
func TestDialOutOfDescriptors(t *testing.T) {
	t.Parallel()
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE} {
		err := classifyDial(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)})
		if err.Kind != KindLocalResources || err.Source != Internal || err.Retry || StatusFor(err) != 503 {
			t.Fatalf("%v: kind %s source %v retry %v status %d; want local_resources, internal, no retry, 503",
				errno, err.Kind, err.Source, err.Retry, StatusFor(err))
		}
		reg := health.NewRegistry(clock.NewFake(time.Unix(1000, 0)), nil)
		rec := reg.Get("web", "127.0.0.1:1")
		passive := health.Passive{MaxFails: 1}
		for range 3 {
			rec.State().InFlight.Add(1)
			finishAttempt(&Session{attempt: attemptTrack{rec: rec, passive: passive}}, err)
		}
		if !rec.State().Healthy() || rec.Snapshot().LastError != "" {
			t.Fatalf("%v: the peer paid for this process's shortage: %+v", errno, rec.Snapshot())
		}
	}
	if k := classifyDial(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}).Kind; k != KindConnectError {
		t.Fatalf("an unreachable host is %s, want connect_error", k)
	}
}
