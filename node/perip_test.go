package node

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
)

// TestNodeMaxConnsPerIP: downstream.max_conns_per_ip reaches the engine (a
// third connection from 127.0.0.1 is reset, 127.0.0.2 is served, the
// refusal is in /metrics), and a change to it is applied by a hand-off to
// a new process, as every other downstream key's: ReloadFile refuses it
// in place and the running node keeps its cap.
func TestNodeMaxConnsPerIP(t *testing.T) {
	a := origin(t, "a")
	nodeFile := writeNodeFiles(t, "test-node", "downstream:\n  max_conns_per_ip: 2\n", clusterFor(a))
	n := startNode(t, nodeFile)
	addr := n.ListenerAddrs()["http"]
	dial := func(from string) (net.Conn, *bufio.Reader) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		return c, bufio.NewReader(c)
	}
	served := func(from string) {
		t.Helper()
		_, br := dial(from)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("from %s: %v", from, err)
		}
		resp.Body.Close()
	}
	served("127.0.0.1")
	served("127.0.0.1")
	c, _ := dial("127.0.0.1")
	if b, err := io.ReadAll(c); len(b) > 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("third connection from 127.0.0.1: %q %v, want a reset", b, err)
	}
	served("127.0.0.2")
	_, metrics := get(t, "http://"+n.AdminAddr()+"/metrics")
	if !strings.Contains(metrics, `pingora_downstream_connections_refused_total{reason="max_conns_per_ip"} 1`) {
		t.Fatalf("/metrics lacks the refusal:\n%s", grepLines(metrics, "connections_refused"))
	}

	data, err := os.ReadFile(nodeFile)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := config.ParseNode(nodeFile, []byte(strings.Replace(string(data), "max_conns_per_ip: 2", "max_conns_per_ip: 3", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadFile(changed); !errors.Is(err, ErrNeedsHandoff) {
		t.Fatalf("ReloadFile with another max_conns_per_ip: %v, want ErrNeedsHandoff", err)
	}
	c, _ = dial("127.0.0.1")
	if b, err := io.ReadAll(c); len(b) > 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the refused reload, a third connection: %q %v, want a reset (the cap still 2)", b, err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
