package h2

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

var updateSeeds = flag.Bool("update-seeds", false, "write testdata/fuzz/FuzzServeFrames from fuzzSeeds")

// TestFuzzServeFramesSeeds keeps testdata/fuzz/FuzzServeFrames in step
// with fuzzSeeds: after changing the table, run
//
//	go test ./proxy/h2 -run TestFuzzServeFramesSeeds -update-seeds
//
// Other files there (crashers the fuzzer wrote, inputs added by hand) are
// left alone.
func TestFuzzServeFramesSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzServeFrames")
	if *updateSeeds {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, ops := range fuzzSeeds() {
		want := fmt.Appendf([]byte("go test fuzz v1\n"), "[]byte(%q)\n", encodeOps(ops))
		path := filepath.Join(dir, name)
		if *updateSeeds {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != string(want) {
			t.Errorf("%s is missing or stale (%v): run with -update-seeds", path, err)
		}
	}
}

// TestFuzzHarness: the harness drives a real connection; known seeds get
// the answers the server gives them today.
func TestFuzzHarness(t *testing.T) {
	seeds := fuzzSeeds()
	const none = http2.ErrCode(1 << 31)
	for _, tc := range []struct {
		seed    string
		status1 string
		reset1  http2.ErrCode
		status3 string
		goAway  int64
	}{
		{"request-valid", "200", none, "200", -1},
		{"request-connection", "", http2.ErrCodeProtocol, "200", -1},
		{"request-name-uppercase", "", http2.ErrCodeProtocol, "200", -1},
		{"request-te-gzip", "", http2.ErrCodeProtocol, "200", -1},
		{"header-list-too-large", "431", none, "200", -1},
		{"handler-resets", "", http2.ErrCodeInternal, "", -1},
		{"rst-idle", "", none, "", int64(http2.ErrCodeProtocol)},
		{"shutdown-idle", "", none, "", int64(http2.ErrCodeNo)},
		{"post-trailers", "200", none, "", -1},
	} {
		t.Run(tc.seed, func(t *testing.T) {
			ops, ok := seeds[tc.seed]
			if !ok {
				t.Fatal("no such seed")
			}
			got := runFuzzConn(t, ops)
			reset1, ok := got.reset[1]
			if !ok {
				reset1 = none
			}
			if got.status[1] != tc.status1 || reset1 != tc.reset1 || got.status[3] != tc.status3 || got.goAway != tc.goAway {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

var getFields = []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "a"}

// fields returns the GET request with the pseudo-header or field name set
// to value (appended when absent); value "-" removes it.
func fields(name, value string) []string { return with(getFields, name, value) }

func with(fs []string, name, value string) []string {
	out := slices.Clone(fs)
	for i := 0; i < len(out); i += 2 {
		if out[i] == name {
			if value == "-" {
				return slices.Delete(out, i, i+2)
			}
			out[i+1] = value
			return out
		}
	}
	return append(out, name, value)
}

// request is a HEADERS op with END_HEADERS, and END_STREAM if end.
func request(id uint32, end bool, fields ...string) fuzzOp {
	flags := http2.FlagHeadersEndHeaders
	if end {
		flags |= http2.FlagHeadersEndStream
	}
	return fuzzOp{kind: opFields, flags: flags, id: id, payload: fieldList(fields...)}
}

func frame(t http2.FrameType, flags http2.Flags, id uint32, payload []byte) fuzzOp {
	return fuzzOp{kind: byte(t), flags: flags, id: id, payload: payload}
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func setting(id http2.SettingID, v uint32) []byte {
	return append([]byte{byte(id >> 8), byte(id)}, u32(v)...)
}

// fuzzSeeds are the named inputs of testdata/fuzz/FuzzServeFrames: the
// malformed-request classes of issue 11 item 1 (each followed by a valid
// request on stream 3), then frame-level cases.
func fuzzSeeds() map[string][]fuzzOp {
	seeds := map[string][]fuzzOp{}
	for _, m := range []map[string][]string{pseudoHeaderRequests(), fieldRequests()} {
		for name, fs := range m {
			seeds["request-"+name] = []fuzzOp{request(1, true, fs...), request(3, true, getFields...)}
		}
	}
	for _, m := range []map[string][]fuzzOp{streamSeeds(), connSeeds()} {
		for name, ops := range m {
			seeds[name] = ops
		}
	}
	return seeds
}

// pseudoHeaderRequests are request heads with a malformed or unusual
// pseudo-header, by class (issue 11 item 1; the h2val table adds more).
func pseudoHeaderRequests() map[string][]string {
	return map[string][]string{

		"valid":                   getFields,
		"path-space":              fields(":path", "/a b"),
		"path-space-http-version": fields(":path", "/a HTTP/1.1\r\nHost: b"),
		"path-no-slash":           fields(":path", "a"),
		"path-fragment":           fields(":path", "/a#b"),
		"path-empty":              fields(":path", ""),
		"path-absent":             fields(":path", "-"),
		"path-control":            fields(":path", "/a\x01b"),
		"path-absolute-form":      fields(":path", "http://b/c"),
		"path-asterisk-get":       fields(":path", "*"),
		"path-asterisk-options":   with(fields(":method", "OPTIONS"), ":path", "*"),
		"method-space":            fields(":method", "GET /x"),
		"method-empty":            fields(":method", ""),
		"method-lowercase":        fields(":method", "get"),
		"method-not-token":        fields(":method", "GE(T"),
		"authority-userinfo":      fields(":authority", "user@a"),
		"authority-userinfo-pass": fields(":authority", "user:pw@a:80"),
		"authority-space":         fields(":authority", "a b"),
		"authority-path":          fields(":authority", "a/b"),
		"authority-absent-host":   append(fields(":authority", "-"), "host", "b"),
		"authority-host-differ":   fields("host", "b"),
		"scheme-ftp":              fields(":scheme", "ftp"),
		"scheme-uppercase":        fields(":scheme", "HTTP"),
		"scheme-empty":            fields(":scheme", ""),
		"scheme-colon":            fields(":scheme", "http:"),
		"pseudo-value-space-end":  fields(":path", "/a "),
		"connection":              fields("connection", "close"),
		"pseudo-after-regular":    append([]string{"x-a", "b"}, getFields...),
		"pseudo-duplicate":        append(slices.Clone(getFields), ":path", "/b"),
		"pseudo-status":           fields(":status", "200"),
		"pseudo-protocol":         fields(":protocol", "websocket"),
		"pseudo-unknown":          fields(":foo", "bar"),
		"connect":                 {":method", "CONNECT", ":authority", "a:443"},
		"connect-with-path":       {":method", "CONNECT", ":authority", "a:443", ":path", "/"},
		"connect-no-authority":    {":method", "CONNECT"},
	}
}

// fieldRequests are request heads with a malformed or connection-specific
// field, by class.
func fieldRequests() map[string][]string {
	return map[string][]string{

		"name-uppercase":          fields("X-Upper", "v"),
		"name-space":              fields("x y", "v"),
		"name-colon":              fields("x:y", "v"),
		"name-empty":              fields("", "v"),
		"value-leading-space":     fields("x-v", " v"),
		"value-trailing-space":    fields("x-v", "v "),
		"value-leading-tab":       fields("x-v", "\tv"),
		"value-cr":                fields("x-v", "a\rb"),
		"value-lf":                fields("x-v", "a\nb"),
		"value-nul":               fields("x-v", "a\x00b"),
		"value-crlf-injection":    fields("x-v", "a\r\nx-injected: 1"),
		"keep-alive":              fields("keep-alive", "timeout=5"),
		"proxy-connection":        fields("proxy-connection", "keep-alive"),
		"transfer-encoding":       fields("transfer-encoding", "chunked"),
		"upgrade-h2c":             append(fields("upgrade", "h2c"), "http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
		"http2-settings":          fields("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
		"te-gzip":                 fields("te", "gzip"),
		"te-trailers-deflate":     fields("te", "trailers, deflate"),
		"te-trailers-uppercase":   fields("te", "TRAILERS"),
		"te-trailers":             fields("te", "trailers"),
		"content-length-word":     fields("content-length", "x"),
		"content-length-negative": fields("content-length", "-1"),
		"content-length-list":     fields("content-length", "1,1"),
		"content-length-space":    fields("content-length", " 1"),
		"content-length-huge":     fields("content-length", "99999999999999999999"),
		"content-length-two":      append(fields("content-length", "1"), "content-length", "2"),
		"content-length-no-body":  fields("content-length", "3"),
		"cookies-split":           append(fields("cookie", "a=1"), "cookie", "b=2"),
	}
}

// streamSeeds exercise a stream's frames: heads, bodies, trailers,
// CONTINUATION, padding, priority, HPACK errors and the handlers' answers.
func streamSeeds() map[string][]fuzzOp {
	post := request(1, false, fields(":method", "POST")...)
	es, eh := http2.FlagDataEndStream, http2.FlagHeadersEndHeaders
	block := headerBlock(getFields...)
	return map[string][]fuzzOp{

		"get-raw-hpack": {frame(http2.FrameHeaders, eh|http2.FlagHeadersEndStream, 1, block)},
		"post-body": {request(1, false, append(fields(":method", "POST"), "content-length", "5")...),
			frame(http2.FrameData, 0, 1, []byte("he")), frame(http2.FrameData, es, 1, []byte("llo"))},
		"post-trailers":   {post, frame(http2.FrameData, 0, 1, []byte("hello")), request(1, true, "grpc-status", "0")},
		"trailers-pseudo": {post, request(1, true, ":path", "/x")},
		"trailers-no-end": {post, request(1, false, "x", "y")},
		"body-longer-than-length": {request(1, false, append(fields(":method", "POST"), "content-length", "2")...),
			frame(http2.FrameData, es, 1, []byte("abc"))},
		"continuation": {frame(http2.FrameHeaders, http2.FlagHeadersEndStream, 1, block[:3]),
			frame(http2.FrameContinuation, http2.FlagContinuationEndHeaders, 1, block[3:])},
		"continuation-interrupted": {frame(http2.FrameHeaders, 0, 1, block[:3]), frame(http2.FrameData, 0, 1, []byte("x"))},
		"continuation-other-stream": {frame(http2.FrameHeaders, 0, 1, block[:3]),
			frame(http2.FrameContinuation, http2.FlagContinuationEndHeaders, 3, block[3:])},
		"continuation-alone": {frame(http2.FrameContinuation, http2.FlagContinuationEndHeaders, 1, block)},
		"padded-data":        {post, frame(http2.FrameData, es|http2.FlagDataPadded, 1, append([]byte{3, 'h', 'i'}, 0, 0, 0))},
		"padding-too-long":   {post, frame(http2.FrameData, es|http2.FlagDataPadded, 1, []byte{9, 'h', 'i'})},
		"headers-padded-priority": {frame(http2.FrameHeaders, eh|http2.FlagHeadersEndStream|http2.FlagHeadersPadded|http2.FlagHeadersPriority, 1,
			append(append([]byte{2, 0, 0, 0, 0, 16}, block...), 0, 0))},
		"headers-depends-on-itself": {frame(http2.FrameHeaders, eh|http2.FlagHeadersEndStream|http2.FlagHeadersPriority, 1,
			append([]byte{0, 0, 0, 1, 16}, block...))},
		"priority-self":            {frame(http2.FramePriority, 0, 1, []byte{0, 0, 0, 1, 16})},
		"priority-bad-size":        {frame(http2.FramePriority, 0, 1, []byte{0, 0, 0, 3})},
		"data-closed-stream":       {request(1, true, getFields...), frame(http2.FrameData, es, 1, []byte("x"))},
		"handler-resets":           {request(1, false, fields(":path", "/reset")...), frame(http2.FrameData, es, 1, []byte("late"))},
		"handler-answers-early":    {request(1, false, fields(":path", "/early")...), frame(http2.FrameData, 0, 1, []byte("late")), frame(http2.FrameData, es, 1, nil)},
		"expect-continue":          {request(1, false, append(fields(":method", "POST"), "expect", "100-continue")...), frame(http2.FrameData, es, 1, []byte("x"))},
		"hpack-bad-index":          {frame(http2.FrameHeaders, eh|http2.FlagHeadersEndStream, 1, []byte{0xff, 0xff, 0x7f})},
		"hpack-table-size-too-big": {frame(http2.FrameHeaders, eh|http2.FlagHeadersEndStream, 1, append([]byte{0x3f, 0xe1, 0xff, 0x03}, block...))},
		"hpack-truncated":          {frame(http2.FrameHeaders, eh|http2.FlagHeadersEndStream, 1, block[:len(block)-1])},
		"header-list-too-large":    {request(1, true, append(slices.Clone(getFields), repeatFields(40, strings.Repeat("v", 250))...)...), request(3, true, getFields...)},
		"too-many-fields":          {request(1, true, append(slices.Clone(getFields), repeatFields(40, "v")...)...), request(3, true, getFields...)},
	}
}

// connSeeds exercise the connection's frames: RST_STREAM, WINDOW_UPDATE,
// SETTINGS, PING, GOAWAY, stream id rules, concurrency and drains.
func connSeeds() map[string][]fuzzOp {
	post := request(1, false, fields(":method", "POST")...)
	es := http2.FlagDataEndStream
	block := headerBlock(getFields...)
	return map[string][]fuzzOp{

		"rst-idle":           {frame(http2.FrameRSTStream, 0, 5, u32(uint32(http2.ErrCodeCancel)))},
		"rst-open":           {post, frame(http2.FrameRSTStream, 0, 1, u32(uint32(http2.ErrCodeCancel))), frame(http2.FrameData, es, 1, []byte("late"))},
		"rst-stream-0":       {frame(http2.FrameRSTStream, 0, 0, u32(0))},
		"window-update-zero": {frame(http2.FrameWindowUpdate, 0, 0, u32(0))},
		"window-overflow":    {frame(http2.FrameWindowUpdate, 0, 0, u32(1<<31-1)), frame(http2.FrameWindowUpdate, 0, 0, u32(1<<31-1))},
		"window-stream-overflow": {post, frame(http2.FrameWindowUpdate, 0, 1, u32(1<<31-1)),
			frame(http2.FrameWindowUpdate, 0, 1, u32(1<<31-1))},
		"big-response-window-shut": {frame(http2.FrameSettings, 0, 0, setting(http2.SettingInitialWindowSize, 0)),
			request(1, true, fields(":path", "/big")...), frame(http2.FramePing, 0, 0, make([]byte, 8))},
		"big-response-window-opens": {request(1, true, fields(":path", "/big")...),
			frame(http2.FrameSettings, 0, 0, setting(http2.SettingInitialWindowSize, 1<<20)),
			frame(http2.FrameWindowUpdate, 0, 0, u32(1<<20))},
		"settings-max-frame": {frame(http2.FrameSettings, 0, 0, setting(http2.SettingMaxFrameSize, 1<<24-1)),
			request(1, true, fields(":path", "/big")...), frame(http2.FrameWindowUpdate, 0, 0, u32(1<<20)),
			frame(http2.FrameWindowUpdate, 0, 1, u32(1<<20))},
		"settings-invalid":        {frame(http2.FrameSettings, 0, 0, setting(http2.SettingMaxFrameSize, 1))},
		"settings-bad-length":     {frame(http2.FrameSettings, 0, 0, []byte{0, 4, 0, 0, 1})},
		"settings-ack-payload":    {frame(http2.FrameSettings, http2.FlagSettingsAck, 0, setting(http2.SettingEnablePush, 0))},
		"settings-on-stream":      {frame(http2.FrameSettings, 0, 1, nil)},
		"settings-header-table-0": {frame(http2.FrameSettings, 0, 0, setting(http2.SettingHeaderTableSize, 0)), request(1, true, getFields...)},
		"ping":                    {frame(http2.FramePing, 0, 0, []byte("12345678"))},
		"ping-bad-length":         {frame(http2.FramePing, 0, 0, []byte("1234"))},
		"ping-on-stream":          {frame(http2.FramePing, 0, 1, []byte("12345678"))},
		"goaway-with-open-stream": {post, frame(http2.FrameGoAway, 0, 0, append(u32(1), u32(0)...)), frame(http2.FrameData, es, 1, []byte("x"))},
		"push-promise":            {frame(http2.FramePushPromise, http2.FlagPushPromiseEndHeaders, 1, append(u32(2), block...))},
		"unknown-type":            {frame(0x0f, 0xff, 1, []byte("whatever")), request(1, true, getFields...)},
		"data-stream-0":           {frame(http2.FrameData, 0, 0, []byte("x"))},
		"data-idle-stream":        {frame(http2.FrameData, 0, 7, []byte("x"))},
		"headers-even-id":         {request(2, true, getFields...)},
		"headers-stream-0":        {request(0, true, getFields...)},
		"headers-decreasing-ids":  {request(5, true, getFields...), request(3, true, getFields...)},
		"headers-max-stream-id":   {request(1<<31-1, true, getFields...), request(1, true, getFields...)},
		"too-many-streams":        {post, request(3, false, getFields...), request(5, false, getFields...), request(7, false, getFields...), request(9, false, getFields...), request(11, true, getFields...)},
		"shutdown-idle":           {{kind: opShutdown}},
		"shutdown-mid-stream":     {post, {kind: opShutdown}, frame(http2.FrameData, es, 1, []byte("x")), request(3, true, getFields...)},
	}
}

// repeatFields returns n fields x-f0 … with value v.
func repeatFields(n int, v string) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("x-f%d", i), v)
	}
	return out
}
