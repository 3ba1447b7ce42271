package node

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/pingora-go/pingora-go/node/config"
)

// The unrecorded path. At a sample ratio of 0.01, 99 requests in 100 are
// not recorded, and going through the SDK for them (a span object, a
// context value, the trace context formatted twice) cost 8 % of a proxied
// request's CPU (BenchmarkProxyTracing). So when the node file's ratio
// decides (OTEL_TRACES_SAMPLER unset), the node makes the sampling
// decision of a request itself: a request whose client sent an
// unsampled trace context, or a new trace the ratio passes over, gets no
// span at all; its trace ID is still named in the access log and sent
// upstream (with a fresh parent ID and the sampled flag clear), so log
// lines join across nodes and the upstream follows the decision. Only
// recorded requests reach the SDK, whose root sampler is then
// AlwaysSample: the ratio was applied here, once.

// fastSampling is the node's own root decision: the share of new traces
// recorded, as TraceIDRatioBased's bound on 63 random bits.
type fastSampling struct {
	on    bool
	bound uint64
}

// newFastSampling returns the decision for cfg, off when
// OTEL_TRACES_SAMPLER chooses the sampler (the SDK then decides every
// span), and the provider's sampler to go with it.
func newFastSampling(cfg config.Tracing, env func(string) string) (fastSampling, sdktrace.Sampler) {
	s := sampler(cfg, env)
	if s == nil {
		return fastSampling{}, nil
	}
	ratio := config.DefaultTraceSampleRatio
	if cfg.SampleRatio != nil {
		ratio = *cfg.SampleRatio
	}
	return fastSampling{on: true, bound: uint64(min(ratio, 1) * (1 << 63))}, sdktrace.ParentBased(sdktrace.AlwaysSample())
}

// record decides a new trace: recorded with the configured ratio.
func (f fastSampling) record() bool {
	return f.bound >= 1<<63 || rand.Uint64()>>1 < f.bound
}

// traceparent parses a W3C traceparent field (one value): the trace ID
// and whether the trace is sampled. A value of a later version is read
// by its first 55 characters, as W3C says; anything else is not ok.
func traceparent(vs []string) (traceID string, sampled, ok bool) {
	if len(vs) != 1 {
		return "", false, false
	}
	v := vs[0]
	switch {
	case len(v) < 55, v[2] != '-', v[35] != '-', v[52] != '-',
		v[:2] == "ff", v[:2] == "00" && len(v) != 55, len(v) > 55 && v[55] != '-':
		return "", false, false
	}
	if !lowerHex(v[:2]) || !lowerHex(v[3:35]) || !lowerHex(v[36:52]) || !lowerHex(v[53:55]) ||
		v[3:35] == "00000000000000000000000000000000" || v[36:52] == "0000000000000000" {
		return "", false, false
	}
	sampled = strings.IndexByte("13579bdf", v[54]) >= 0 // the flags' low bit
	return v[3:35], sampled, true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newTraceID is a random trace ID, 32 lowercase hex digits.
func newTraceID() string {
	var b [16]byte
	putRandom(b[:])
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}

func putRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		r := rand.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(r >> (8 * j))
		}
	}
}

// injectUnsampled writes into h the traceparent of an unrecorded trace
// traceID under a fresh parent ID, sampled flag clear; the client's
// tracestate, copied with the request, goes on as it is.
func injectUnsampled(h http.Header, traceID string) {
	var b [55]byte
	copy(b[:], "00-")
	copy(b[3:35], traceID)
	b[35] = '-'
	var id [8]byte
	putRandom(id[:])
	hex.Encode(b[36:52], id[:])
	copy(b[52:], "-00")
	h["Traceparent"] = []string{string(b[:])}
}
