package nodetest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// node that does not stop everything it started, or a fault the harness
// leaves running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
