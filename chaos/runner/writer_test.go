package main

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestRegisterModel: the versioned register accepts a history where each
// write gets the next version and reads see the latest, takes a write of
// unknown outcome as applied or not, and refuses a read that goes back a
// version after a write was acknowledged (what the upgrade scenario saw).
func TestRegisterModel(t *testing.T) {
	w := func(client, value int, call, ret float64, version int64) histOp {
		return histOp{Client: client, Write: true, Value: value, Call: call, Return: ret, Version: version}
	}
	rd := func(client int, call, ret float64, version int64, got int) histOp {
		return histOp{Client: client, Call: call, Return: ret, Version: version, Got: got}
	}
	unknown := func(client, value int, call float64) histOp {
		return histOp{Client: client, Write: true, Value: value, Call: call, Return: -1, Unknown: true}
	}
	init := regState{Version: 1, Value: 0}
	for _, tc := range []struct {
		name string
		hist []histOp
		want porcupine.CheckResult
	}{
		{"sequential", []histOp{w(0, 7, 1, 2, 2), rd(1, 3, 4, 2, 7), w(0, 8, 5, 6, 3), rd(1, 7, 8, 3, 8)}, porcupine.Ok},
		{"concurrent writes in either order", []histOp{w(0, 7, 1, 5, 3), w(1, 8, 2, 4, 2), rd(2, 6, 7, 3, 7)}, porcupine.Ok},
		{"unknown write applied", []histOp{unknown(0, 7, 1), rd(1, 3, 4, 2, 7)}, porcupine.Ok},
		{"unknown write not applied", []histOp{unknown(0, 7, 1), rd(1, 3, 4, 1, 0), w(1, 9, 5, 6, 2)}, porcupine.Ok},
		{"stale read after an ack", []histOp{w(0, 7, 1, 2, 2), rd(1, 3, 4, 1, 0)}, porcupine.Illegal},
		{"version skipped", []histOp{w(0, 7, 1, 2, 3)}, porcupine.Illegal},
		{"read of another value at the version", []histOp{w(0, 7, 1, 2, 2), rd(1, 3, 4, 2, 9)}, porcupine.Illegal},
	} {
		if got := checkLinearizable(init, tc.hist, 0); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
