package config

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
)

// DefaultTraceSampleRatio is the share of new traces recorded when neither
// tracing.sample_ratio nor OTEL_TRACES_SAMPLER says (1 in 100): cheap
// enough to leave on (issue 17: at most 2 % CPU per request).
const DefaultTraceSampleRatio = 0.01

// Tracing configures OpenTelemetry traces (issue 17; README "Traces").
// Tracing is on when Endpoint is set, or when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// variable is; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn
// it off. The other OTEL_EXPORTER_OTLP_* variables (headers, timeout,
// TLS) and OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES are honoured.
type Tracing struct {
	// Endpoint is the OTLP/HTTP collector's URL, such as
	// "http://127.0.0.1:4318"; "/v1/traces" is appended when it has no
	// path (default "": the OTEL_* variables decide).
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share of new traces recorded, from 0 to 1; a
	// request whose client sent a trace context follows the client's
	// decision (default 0.01, or OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG when those are set).
	SampleRatio *float64 `yaml:"sample_ratio"`
}

// validateTracing checks the tracing settings.
func (n *Node) validateTracing(e *errs) {
	t := n.Tracing
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			e.add("tracing.endpoint", "%q is not an http:// or https:// URL with a host", t.Endpoint)
		}
	}
	if r := t.SampleRatio; r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
		e.add("tracing.sample_ratio", "%v is not between 0 and 1", *r)
	}
}

func setRatio(field func(*Node) **float64) func(*Node, string, bool) error {
	return func(n *Node, v string, _ bool) error {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
		*field(n) = &f
		return nil
	}
}
