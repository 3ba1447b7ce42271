package proxy

import (
	"errors"
	"fmt"
	"testing"
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
