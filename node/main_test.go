package node

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// node's Shutdown (or a failed Start) must leave nothing running, its
// own goroutines nor those of memberlist, raft and the OTel SDK.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
