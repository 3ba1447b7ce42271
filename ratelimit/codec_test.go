package ratelimit

import (
	"reflect"
	"runtime"
	"testing"
)

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	reps := []report{
		{rule: "api", key: "k1", used: 5, extra: 1, denied: 7, span: 50e6},
		{rule: "api", key: "", returned: 3, hasHint: true, hint: snap{at: 1_700_000_000, a: -1, b: 900}},
	}
	from, got, err := decodeReports(encodeReports(nil, "node-a", reps))
	if err != nil || from != "node-a" || !reflect.DeepEqual(got, reps) {
		t.Fatalf("reports: %q %+v %v", from, got, err)
	}
	as := []answer{{status: statusOK, grant: 17, ttl: 4e8, count: 990, snap: snap{at: 5, a: 1000, b: 3}}, {status: statusNotOwner}}
	gotA, err := decodeAnswers(encodeAnswers(nil, as), 2)
	if err != nil || !reflect.DeepEqual(gotA, as) {
		t.Fatalf("answers: %+v %v", gotA, err)
	}
	if _, err := decodeAnswers(encodeAnswers(nil, as), 3); err == nil {
		t.Fatal("an answer with the wrong number of lines was accepted")
	}
	hs := []handoff{{rule: "api", key: "k", snap: snap{at: 9, a: 1, b: 2}, leases: []handoffLease{{node: "b", out: 4, left: 1e9}}}}
	_, gotH, err := decodeHandoffs(encodeHandoffs(nil, "a", hs))
	if err != nil || !reflect.DeepEqual(gotH, hs) {
		t.Fatalf("hand-offs: %+v %v", gotH, err)
	}
}

// FuzzDecode: no body makes a decoder panic or allocate past its bounds,
// and what decodes encodes to a body that decodes to the same reports.
func FuzzDecode(f *testing.F) {
	f.Add(encodeReports(nil, "a", []report{{rule: "r", key: "k", used: 1, hasHint: true}}))
	f.Add(encodeAnswers(nil, []answer{{grant: 3}}))
	f.Add(encodeHandoffs(nil, "a", []handoff{{rule: "r", key: "k", leases: []handoffLease{{node: "n"}}}}))
	f.Add([]byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		if from, reps, err := decodeReports(b); err == nil {
			from2, again, err := decodeReports(encodeReports(nil, from, reps))
			if err != nil || from2 != from || !reflect.DeepEqual(again, reps) {
				t.Fatalf("reports do not round-trip: %+v then %+v, %v", reps, again, err)
			}
		}
		decodeAnswers(b, 1)
		decodeHandoffs(b)
	})
}

// TestDecodeBoundsLinesByBody: a body declaring more lines than it has
// bytes for is refused before anything is allocated for them. A 7-byte
// sync call declaring 65,535 lines made the owner allocate (and keep in
// its pooled scratch) about 7 MB; a hand-off about 5 MB.
func TestDecodeBoundsLinesByBody(t *testing.T) {
	body := []byte{codecVersion, 1, 'a', 0xff, 0xff, 0x03} // from "a", 65535 lines, none sent
	_, reps, err := decodeReportsInto(nil, body)
	if err == nil || cap(reps) > len(body) {
		t.Fatalf("reports: err %v, %d lines allocated for a %d-byte body", err, cap(reps), len(body))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, hs, err := decodeHandoffs(body)
	runtime.ReadMemStats(&after)
	if err == nil || cap(hs) > len(body) {
		t.Fatalf("hand-offs: err %v, %d allocated for a %d-byte body", err, cap(hs), len(body))
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 64<<10 {
		t.Fatalf("decoding a %d-byte hand-off allocated %d bytes", len(body), d)
	}
}
