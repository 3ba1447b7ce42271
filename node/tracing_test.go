package node

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pingora-go/pingora-go/internal/logtest"
	"github.com/pingora-go/pingora-go/node/config"
	"github.com/pingora-go/pingora-go/wire"
)

// startTracedNode starts a node whose spans go to exp (every trace
// recorded) and whose access log goes to log.
func startTracedNode(t *testing.T, nodeFile string, exp sdktrace.SpanExporter, log io.Writer) *Node {
	return startTracedNodeRatio(t, nodeFile, exp, log, 1)
}

// startTracedNodeRatio is startTracedNode recording the given share of
// new traces.
func startTracedNodeRatio(t *testing.T, nodeFile string, exp sdktrace.SpanExporter, log io.Writer, ratio float64) *Node {
	t.Helper()
	cfg, err := config.LoadNode(nodeFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tracing.SampleRatio = &ratio
	n, err := New(cfg, Options{Version: "test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), TraceExporter: exp, AccessLog: log})
	if err != nil {
		t.Fatal(err)
	}
	return runNode(t, n)
}

// spanAttr returns a span's attribute k, or an invalid value.
func spanAttr(s tracetest.SpanStub, k attribute.Key) attribute.Value {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value
		}
	}
	return attribute.Value{}
}

func instanceOf(s tracetest.SpanStub) string {
	v, _ := s.Resource.Set().Value(semconv.ServiceInstanceIDKey)
	return v.AsString()
}

// TestTraceAcrossTwoNodes: node a proxies to node b's listener, b to the
// origin. One request to a, with a sampled traceparent from the client,
// yields one trace: the client's span → a's request span → a's upstream
// attempt → b's request span → b's upstream attempt; the origin gets b's
// attempt as its parent; both access logs carry the trace ID.
func TestTraceAcrossTwoNodes(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	var parents sync.Map
	originSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parents.Store("origin", r.Header.Get("Traceparent"))
		io.WriteString(w, "hello")
	})}
	originAddr := serveHTTP(t, originSrv)
	var logA, logB logtest.Buffer
	b := startTracedNode(t, writeNodeFiles(t, "b", "access_log: true\n", clusterFor(originAddr)), exp, &logB)
	a := startTracedNode(t, writeNodeFiles(t, "a", "access_log: true\n", clusterFor(b.ListenerAddrs()["http"])), exp, &logA)

	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("GET", "http://"+a.ListenerAddrs()["http"]+"/x", nil)
	req.Header.Set("Traceparent", "00-"+clientTrace+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	waitUntil(t, "4 spans", func() bool { return len(exp.GetSpans()) == 4 })
	spans := exp.GetSpans().Snapshots()
	find := func(node string, kind trace.SpanKind) tracetest.SpanStub {
		for _, s := range tracetest.SpanStubsFromReadOnlySpans(spans) {
			if instanceOf(s) == node && s.SpanKind == kind {
				return s
			}
		}
		t.Fatalf("no %v span from node %s in %d spans", kind, node, len(spans))
		return tracetest.SpanStub{}
	}
	aReq, aUp := find("a", trace.SpanKindServer), find("a", trace.SpanKindClient)
	bReq, bUp := find("b", trace.SpanKindServer), find("b", trace.SpanKindClient)
	chain := []tracetest.SpanStub{aReq, aUp, bReq, bUp}
	for i, s := range chain {
		if s.SpanContext.TraceID().String() != clientTrace {
			t.Fatalf("span %d (%s on %s) is in trace %s, want the client's %s", i, s.Name, instanceOf(s), s.SpanContext.TraceID(), clientTrace)
		}
		if i > 0 && s.Parent.SpanID() != chain[i-1].SpanContext.SpanID() {
			t.Fatalf("span %d (%s on %s) has parent %s, want span %d's %s", i, s.Name, instanceOf(s), s.Parent.SpanID(), i-1, chain[i-1].SpanContext.SpanID())
		}
	}
	if aReq.Parent.SpanID().String() != "00f067aa0ba902b7" || !aReq.Parent.IsRemote() {
		t.Fatalf("a's request span's parent %v, want the client's span", aReq.Parent)
	}
	if got, _ := parents.Load("origin"); !strings.Contains(got.(string), bUp.SpanContext.SpanID().String()) {
		t.Fatalf("origin got traceparent %q, want b's attempt %s", got, bUp.SpanContext.SpanID())
	}
	for _, c := range []struct {
		s    tracetest.SpanStub
		k    attribute.Key
		want string
	}{
		{aReq, semconv.HTTPRequestMethodKey, "GET"}, {aReq, semconv.URLPathKey, "/x"},
		{aUp, semconv.ServerAddressKey, "127.0.0.1"}, {aUp, semconv.NetworkProtocolVersionKey, "1.1"},
	} {
		if got := c.s.Attributes; spanAttr(c.s, c.k).Emit() != c.want {
			t.Fatalf("%s: %s = %q, want %q (%v)", c.s.Name, c.k, spanAttr(c.s, c.k).Emit(), c.want, got)
		}
	}
	if spanAttr(aReq, semconv.HTTPResponseStatusCodeKey).AsInt64() != 200 || spanAttr(bUp, semconv.HTTPResponseStatusCodeKey).AsInt64() != 200 {
		t.Fatal("status codes missing on the spans")
	}
	if v := spanAttr(aUp, "pingora.upstream.connection_reused"); v.Type() != attribute.BOOL {
		t.Fatal("the attempt span does not say whether its connection was reused")
	}
	for name, log := range map[string]*logtest.Buffer{"a": &logA, "b": &logB} {
		waitUntil(t, name+"'s access log line", func() bool { return strings.Contains(log.String(), `"trace_id"`) })
		var line struct {
			TraceID string `json:"trace_id"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(log.String())), &line); err != nil || line.TraceID != clientTrace {
			t.Fatalf("%s's access log %q: trace_id %q (%v)", name, log.String(), line.TraceID, err)
		}
	}
}

// TestUnrecordedRequestJoinsLogs: at ratio 0 a request through two nodes
// makes no span, yet both access logs name one trace ID, and the origin
// gets that trace, unsampled.
func TestUnrecordedRequestJoinsLogs(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	var got sync.Map
	originAddr := serveHTTP(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store("tp", r.Header.Get("Traceparent"))
	})})
	var logA, logB logtest.Buffer
	b := startTracedNodeRatio(t, writeNodeFiles(t, "b", "access_log: true\n", clusterFor(originAddr)), exp, &logB, 0)
	a := startTracedNodeRatio(t, writeNodeFiles(t, "a", "access_log: true\n", clusterFor(b.ListenerAddrs()["http"])), exp, &logA, 0)
	if code, _ := get(t, "http://"+a.ListenerAddrs()["http"]+"/"); code != 200 {
		t.Fatalf("status %d", code)
	}
	ids := map[string]string{}
	for name, log := range map[string]*logtest.Buffer{"a": &logA, "b": &logB} {
		waitUntil(t, name+"'s access log line", func() bool { return strings.Contains(log.String(), `"trace_id"`) })
		var line struct {
			TraceID string `json:"trace_id"`
		}
		json.Unmarshal([]byte(strings.TrimSpace(log.String())), &line)
		ids[name] = line.TraceID
	}
	tp, _ := got.Load("tp")
	if len(ids["a"]) != 32 || ids["a"] != ids["b"] || !strings.HasPrefix(tp.(string), "00-"+ids["a"]+"-") || !strings.HasSuffix(tp.(string), "-00") {
		t.Fatalf("trace IDs a %q, b %q; origin got %q", ids["a"], ids["b"], tp)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans recorded at ratio 0", n)
	}
}

// TestTraceOverWire: a call from node a to node b's cluster RPC, made
// within a trace, is one trace across both nodes: a's client span under
// the caller's span, b's server span under a's.
func TestTraceOverWire(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	extra := "cluster_addr: 127.0.0.1:0\n"
	up := origin(t, "x")
	a := startTracedNode(t, writeNodeFiles(t, "a", extra, clusterFor(up)), exp, io.Discard)
	b := startTracedNode(t, writeNodeFiles(t, "b", extra, clusterFor(up)), exp, io.Discard)
	cl, err := wire.NewClient(wire.ClientConfig{Tracer: a.tracing.wireTracer()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, root := a.tracing.get().Start(context.Background(), "caller")
	var st RPCStatus
	if err := cl.Call(ctx, b.RPCAddr(), rpcStatusMethod, rpcEmpty{}, &st); err != nil || st.Name != "b" {
		t.Fatalf("node.status: %+v, %v", st, err)
	}
	root.End()
	waitUntil(t, "3 spans", func() bool { return len(exp.GetSpans()) == 3 })
	var client, server tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		switch {
		case s.SpanKind == trace.SpanKindClient && instanceOf(s) == "a":
			client = s
		case s.SpanKind == trace.SpanKindServer && instanceOf(s) == "b":
			server = s
		}
	}
	if client.Name != rpcStatusMethod || client.Parent.SpanID() != root.SpanContext().SpanID() {
		t.Fatalf("a's client span %q under %v, want node.status under the caller", client.Name, client.Parent.SpanID())
	}
	if server.Name != rpcStatusMethod || server.Parent.SpanID() != client.SpanContext.SpanID() ||
		server.SpanContext.TraceID() != root.SpanContext().TraceID() {
		t.Fatalf("b's server span %q in trace %v under %v, want node.status under a's client span", server.Name, server.SpanContext.TraceID(), server.Parent.SpanID())
	}
	if spanAttr(server, semconv.RPCMethodKey).AsString() != rpcStatusMethod {
		t.Fatal("rpc.method missing")
	}
}

// TestConfigWriteSpan: a config write is traced as its raft apply, with
// the version written, under the trace context of the admin request.
func TestConfigWriteSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	up := origin(t, "a")
	extra := "data_dir: " + t.TempDir() + "\ncluster_addr: 127.0.0.1:0\nupgrade_socket: " + filepath.Join(t.TempDir(), "up.sock") + "\n"
	n := startTracedNode(t, writeNodeFiles(t, "n1", extra, clusterFor(up)), exp, io.Discard)
	waitUntil(t, "version 1", func() bool { c := n.Status().Config; return c != nil && c.Version == 1 })
	const tr = "0af7651916cd43dd8448eb211c80319c"
	code, body := send(t, "PUT", "http://"+n.AdminAddr()+"/v1/config", clusterFor(origin(t, "b")),
		map[string]string{"Traceparent": "00-" + tr + "-b7ad6b7169203331-01"})
	if code != 200 {
		t.Fatalf("write: %d %s", code, body)
	}
	waitUntil(t, "raft apply span", func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == "raft apply" {
				return true
			}
		}
		return false
	})
	for _, s := range exp.GetSpans() {
		if s.Name != "raft apply" {
			continue
		}
		if s.SpanContext.TraceID().String() != tr || s.Parent.SpanID().String() != "b7ad6b7169203331" {
			t.Fatalf("raft apply in trace %s under %s, want the request's", s.SpanContext.TraceID(), s.Parent.SpanID())
		}
		if v := spanAttr(tracetest.SpanStubFromReadOnlySpan(s.Snapshot()), "pingora.config.version"); v.AsInt64() != 2 {
			t.Fatalf("version attribute %v, want 2", v.Emit())
		}
	}
}

// TestTracingSwitches: the node file and the standard variables turn
// tracing on and off and pick the sampler.
func TestTracingSwitches(t *testing.T) {
	t.Parallel()
	half := 0.5
	cases := []struct {
		name    string
		cfg     config.Tracing
		env     map[string]string
		on      bool
		sampler string // the sampler's description, "" for the SDK's choice
	}{
		{name: "nothing set", sampler: "ParentBased{root:TraceIDRatioBased{0.01}"},
		{name: "endpoint", cfg: config.Tracing{Endpoint: "http://c:4318"}, on: true, sampler: "ParentBased{root:TraceIDRatioBased{0.01}"},
		{name: "OTEL endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, on: true, sampler: "TraceIDRatioBased{0.01}"},
		{name: "OTEL traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, on: true},
		{name: "SDK disabled", cfg: config.Tracing{Endpoint: "http://c:4318"}, env: map[string]string{"OTEL_SDK_DISABLED": "true"}},
		{name: "exporter none", cfg: config.Tracing{Endpoint: "http://c:4318"}, env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}},
		{name: "ratio from the file", cfg: config.Tracing{Endpoint: "http://c", SampleRatio: &half}, on: true, sampler: "TraceIDRatioBased{0.5}"},
		{name: "OTEL sampler", cfg: config.Tracing{Endpoint: "http://c"}, env: map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, on: true, sampler: ""},
		{name: "file ratio over OTEL sampler", cfg: config.Tracing{SampleRatio: &half}, env: map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, sampler: "TraceIDRatioBased{0.5}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := func(k string) string { return tc.env[k] }
			if got := tracingEnabled(tc.cfg, env); got != tc.on {
				t.Fatalf("on = %v, want %v", got, tc.on)
			}
			s := sampler(tc.cfg, env)
			switch {
			case tc.sampler == "" && tc.name == "OTEL sampler" && s != nil:
				t.Fatalf("sampler %s, want the SDK's (from OTEL_TRACES_SAMPLER)", s.Description())
			case tc.sampler != "" && (s == nil || !strings.Contains(s.Description(), tc.sampler)):
				t.Fatalf("sampler %v, want %s", s, tc.sampler)
			}
		})
	}
	for in, want := range map[string]string{
		"http://c:4318": "http://c:4318/v1/traces", "http://c:4318/": "http://c:4318/v1/traces", "https://c/otlp/v1/traces": "https://c/otlp/v1/traces",
	} {
		if got := endpointURL(in); got != want {
			t.Fatalf("endpointURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// serveHTTP serves srv on a loopback port until the test ends.
func serveHTTP(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}
