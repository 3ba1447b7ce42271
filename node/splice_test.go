package node

import (
	"testing"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestProxyConfigSplice: the node file's splice setting reaches the
// engine; unset keeps splicing on.
func TestProxyConfigSplice(t *testing.T) {
	off, on := false, true
	for _, tc := range []struct {
		splice       *bool
		wantNoSplice bool
	}{{nil, false}, {&on, false}, {&off, true}} {
		if got := proxyConfig(&config.Node{Splice: tc.splice}, &cachePart{}).NoSplice; got != tc.wantNoSplice {
			t.Errorf("splice %v: NoSplice %v, want %v", tc.splice, got, tc.wantNoSplice)
		}
	}
}
