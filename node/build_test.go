package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora-go/node/config"
)

// tlsOrigin serves name over TLS on 127.0.0.1 with a certificate the CA
// signed for that IP.
func (ca *testCA) tlsOrigin(t *testing.T, name string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestCAPeerStateSurvivesReload: a peer verified with a CA file keeps its
// manual disable across reloads that read the same file again, with and
// without unrelated changes, and its metric series are not duplicated; the
// CA's identity is the file's digest, so new contents make a new identity.
func TestCAPeerStateSurvivesReload(t *testing.T) {
	ca := newClusterCA(t)
	a, b := ca.tlsOrigin(t, "a"), ca.tlsOrigin(t, "b")
	caFile := filepath.Join(ca.dir, "ca.pem")
	cluster := func(retries int) string {
		return fmt.Sprintf("upstreams:\n  - name: web\n    retries: %d\n    tls: {ca: %s}\n    peers:\n      - addr: %s\n      - addr: %s\nroutes:\n  - host: \"*\"\n    upstream: web\n",
			retries, caFile, a, b)
	}
	nodeFile := writeFiles(t, cluster(1))
	n := startNode(t, nodeFile)
	proxyURL := "http://" + n.ListenerAddrs()["http"]
	if code, body := post(t, "http://"+n.AdminAddr()+"/v1/upstreams/web/peers/"+a+"/disable", ""); code != 200 {
		t.Fatalf("disable: %d %s", code, body)
	}
	clusterFile := filepath.Join(filepath.Dir(nodeFile), "cluster.yaml")
	for i, retries := range []int{2, 1, 2, 1} {
		os.WriteFile(clusterFile, []byte(cluster(retries)), 0o644)
		if err := n.Reload(); err != nil {
			t.Fatal(err)
		}
		if v := n.Status().Config.Version; v != int64(i+2) {
			t.Fatalf("reload %d: version %d", i, v)
		}
		if p := n.Status().Upstreams[0].Peers[0]; p.Addr != a || !p.Disabled || p.Healthy {
			t.Fatalf("reload %d: disabled peer is %+v", i, p)
		}
		for range 4 {
			if code, body := get(t, proxyURL+"/"); code != 200 || body != "b" {
				t.Fatalf("reload %d: %d %q", i, code, body)
			}
		}
	}
	fams, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range fams {
		if mf.GetName() == "pingora_upstream_peer_healthy" && len(mf.GetMetric()) != 2 {
			t.Fatalf("%d peer gauge series for 2 peers", len(mf.GetMetric()))
		}
	}

	u := config.Upstream{Name: "web", TLS: &config.UpstreamTLS{CA: caFile}, Peers: []config.Peer{{Addr: a}}}
	id := func() string {
		t.Helper()
		uc, err := buildUpstream(u, buildEnv{resolve: func(p string) string { return p }, readCA: true})
		if err != nil {
			t.Fatal(err)
		}
		return uc.Peers[0].RootCAsID
	}
	first := id()
	if !strings.HasPrefix(first, "sha256:") || id() != first {
		t.Fatalf("CA identity %q is not the file's digest", first)
	}
	other := newClusterCA(t)
	pem, _ := os.ReadFile(filepath.Join(other.dir, "ca.pem"))
	os.WriteFile(caFile, pem, 0o644)
	if id() == first {
		t.Fatal("a CA file with new contents kept its identity")
	}
}

// TestListenerConfigTrustedProxies: a listener's trusted_proxies reach the
// engine's ListenerConfig as networks, single addresses as /32 and /128.
func TestListenerConfigTrustedProxies(t *testing.T) {
	n := &config.Node{}
	lc, err := listenerConfig(n, config.Listener{Name: "http", TrustedProxies: []string{"10.0.0.0/8", "2001:db8::1"}})
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128")}
	if err != nil || !slices.Equal(lc.TrustedProxies, want) {
		t.Fatalf("TrustedProxies %v, %v; want %v", lc.TrustedProxies, err, want)
	}
	if lc, _ := listenerConfig(n, config.Listener{Name: "http"}); lc.TrustedProxies != nil {
		t.Fatalf("no trusted_proxies, yet %v", lc.TrustedProxies)
	}
}
