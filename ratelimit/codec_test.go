package ratelimit

import (
	"reflect"
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
