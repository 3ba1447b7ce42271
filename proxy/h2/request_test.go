package h2

import (
	"fmt"
	"net"
	"net/http"
	"reflect"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// newTestConn is a Conn for calling its methods directly; nothing is
// served on it.
func newTestConn(t *testing.T) *Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return NewConn(a, nil, Config{}, nil)
}

func requestBlock(id uint32, regular ...string) *fieldBlock {
	f := &fieldBlock{streamID: id, endStream: true, fields: []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/"}, {Name: ":authority", Value: "a"},
	}}
	for i := 0; i < len(regular); i += 2 {
		f.fields = append(f.fields, hpack.HeaderField{Name: regular[i], Value: regular[i+1]})
	}
	return f
}

// TestRequestFieldValues: whatever the number of fields (the values are
// cut from an array sized by it, kept with the Stream when small), the
// header holds each field's values, repeated fields in order, cookies
// joined, host out; appending to one field's values, or writing them,
// leaves the others as they were.
func TestRequestFieldValues(t *testing.T) {
	c := newTestConn(t)
	for n := 0; n <= 12; n++ {
		var regular []string
		want := http.Header{}
		for i := range n {
			name, value := fmt.Sprintf("x-f%d", i%5), fmt.Sprintf("v%d", i)
			switch i {
			case 3:
				name = "cookie"
			case 6:
				name = "host"
				value = "a"
			}
			regular = append(regular, name, value)
			switch name {
			case "cookie", "host":
			default:
				want.Add(name, value)
			}
		}
		if n > 3 {
			want["Cookie"] = []string{"v3"}
		}
		st, err := c.newStream(requestBlock(uint32(2*n+1), regular...))
		if err != nil {
			t.Fatalf("%d fields: %v", n, err)
		}
		st.cancel(nil)
		if !reflect.DeepEqual(st.Header, want) {
			t.Fatalf("%d fields: header %v, want %v", n, st.Header, want)
		}
		for k := range st.Header {
			st.Header[k] = append(st.Header[k], "appended")
			st.Header[k][0] = "overwritten " + k
		}
		for k, v := range want {
			got := st.Header[k]
			if len(got) != len(v)+1 || got[0] != "overwritten "+k || !reflect.DeepEqual(got[1:len(v)], v[1:]) || got[len(v)] != "appended" {
				t.Fatalf("%d fields: %s is %q after the writes, from %q", n, k, got, v)
			}
		}
	}
}

// TestNewStreamAllocs: a stream with a few fields costs five allocations:
// the Stream and its field values (one), the header map (two: its head
// and first group) and the context (two). The channels are made when
// needed: one for a request body, one for a write that waits for window.
func TestNewStreamAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c := newTestConn(t)
	f := requestBlock(1, "user-agent", "test", "accept-encoding", "gzip")
	allocs := testing.AllocsPerRun(100, func() {
		st, err := c.newStream(f)
		if err != nil {
			t.Fatal(err)
		}
		st.cancel(nil)
	})
	if allocs > 5 {
		t.Fatalf("newStream: %v allocations, want 5", allocs)
	}
}
