package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA makes a CA and signs node certificates with it, as PEM files.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newClusterCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cluster CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	os.WriteFile(filepath.Join(ca.dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return ca
}

// issue writes name.pem and name.key signed by the CA and returns the
// node-file block naming them.
func (ca *testCA) issue(t *testing.T, name string) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, keyFile := filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return fmt.Sprintf("cluster_tls: {ca: %s, cert: %s, key: %s}\n", filepath.Join(ca.dir, "ca.pem"), cert, keyFile)
}

// TestClusterTLS: two nodes replicate their config over mutually
// authenticated TLS, with raft on the cluster port, on a port of its own
// (raft_addr), and one node of each kind (each dials the other's raft as
// the other gossips it); a client without a certificate, or with one from
// another CA, is refused on the raft and RPC ports.
func TestClusterTLS(t *testing.T) {
	own := "raft_addr: 127.0.0.1:0\n"
	for name, raftAddr := range map[string][2]string{"one cluster port": {"", ""}, "raft_addr": {own, own}, "mixed": {"", own}} {
		t.Run(name, func(t *testing.T) { testClusterTLS(t, raftAddr) })
	}
}

func testClusterTLS(t *testing.T, raftAddr [2]string) {
	ca, other := newClusterCA(t), newClusterCA(t)
	a, b := origin(t, "a"), origin(t, "b")
	start := func(name string, raftAddr string, seeds ...string) *Node {
		extra := fmt.Sprintf("gossip_addr: 127.0.0.1:0\ngossip_profile: fast\n%scluster_addr: 127.0.0.1:0\ndata_dir: %s\nbootstrap_expect: 2\nupgrade_socket: %s/up.sock\n%s",
			raftAddr, t.TempDir(), t.TempDir(), ca.issue(t, name))
		if len(seeds) > 0 {
			extra += "join: [" + seeds[0] + "]\n"
		}
		return startNode(t, writeNodeFiles(t, name, extra, clusterFor(a)))
	}
	n1 := start("n1", raftAddr[0])
	n2 := start("n2", raftAddr[1], n1.Members().Addr())
	for i, n := range []*Node{n1, n2} {
		if shared := n.Store().Addr() == n.RPCAddr(); shared != (raftAddr[i] == "") {
			t.Fatalf("%s: raft at %s, cluster port at %s", n.cfg.Name, n.Store().Addr(), n.RPCAddr())
		}
	}
	waitUntil(t, "both nodes on version 1", func() bool {
		s1, s2 := n1.Status(), n2.Status()
		return s1.Config != nil && s2.Config != nil && s1.Config.Version == 1 && s2.Config.Version == 1
	})
	for _, n := range []*Node{n1, n2} {
		if code, body := putConfig(t, n.AdminAddr(), clusterFor(b), ""); code != 200 {
			t.Fatalf("write on %s over TLS: %d %s", n.cfg.Name, code, body)
		}
	}
	waitUntil(t, "version 2 on both", func() bool { return n1.Status().Config.Version == 2 && n2.Status().Config.Version == 2 })

	other.issue(t, "stranger")
	strangerCert, err := tls.LoadX509KeyPair(filepath.Join(other.dir, "stranger.pem"), filepath.Join(other.dir, "stranger.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{n1.Store().Addr(), n1.RPCAddr()} {
		for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "another CA": {strangerCert}} {
			c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: certs})
			if err == nil {
				// TLS 1.3: the client learns of the refusal on its first read.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil {
				t.Fatalf("%s: client with %s accepted", addr, name)
			}
		}
	}
}
