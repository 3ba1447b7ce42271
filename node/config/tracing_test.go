package config

import (
	"strings"
	"testing"
)

// TestTracingSettings: the tracing settings come from the file, the
// environment or flags, and bad values are refused naming the field and
// its source.
func TestTracingSettings(t *testing.T) {
	t.Parallel()
	base := "name: n\nlisteners: [{name: http, addr: 127.0.0.1:8080}]\ncluster_config: c.yaml\n"
	cases := []struct {
		name     string
		file     string
		env      []string
		flags    []string
		endpoint string
		ratio    float64 // -1: unset
		err      string
	}{
		{name: "off by default", ratio: -1},
		{name: "file", file: "tracing: {endpoint: 'http://127.0.0.1:4318', sample_ratio: 0.5}\n", endpoint: "http://127.0.0.1:4318", ratio: 0.5},
		{name: "zero ratio is kept", file: "tracing: {sample_ratio: 0}\n", ratio: 0},
		{name: "env", env: []string{"PINGORA_TRACING_ENDPOINT=https://c:4318/x", "PINGORA_TRACING_SAMPLE_RATIO=1"}, endpoint: "https://c:4318/x", ratio: 1},
		{name: "flag over env", env: []string{"PINGORA_TRACING_SAMPLE_RATIO=1"}, flags: []string{"--tracing-sample-ratio=0.25"}, ratio: 0.25},
		{name: "ratio over 1", file: "tracing: {sample_ratio: 2}\n", err: "tracing.sample_ratio: 2 is not between 0 and 1"},
		{name: "ratio not a number", flags: []string{"--tracing-sample-ratio=lots"}, err: `flag --tracing-sample-ratio: tracing.sample_ratio: "lots" is not a number`},
		{name: "endpoint without scheme", env: []string{"PINGORA_TRACING_ENDPOINT=collector:4318"}, err: `PINGORA_TRACING_ENDPOINT: tracing.endpoint: "collector:4318" is not an http:// or https:// URL`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n, err := Load(Sources{File: writeNodeFile(t, base+tc.file), Env: envOf(tc.env...), Flags: flags(tc.flags...), Hostname: hostname("h")})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Tracing.Endpoint != tc.endpoint {
				t.Fatalf("endpoint %q, want %q", n.Tracing.Endpoint, tc.endpoint)
			}
			switch r := n.Tracing.SampleRatio; {
			case tc.ratio < 0 && r != nil:
				t.Fatalf("ratio %v, want unset", *r)
			case tc.ratio >= 0 && (r == nil || *r != tc.ratio):
				t.Fatalf("ratio %v, want %v", r, tc.ratio)
			}
		})
	}
}
