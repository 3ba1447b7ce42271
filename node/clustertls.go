package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// clusterTLS is the node-to-node mutual TLS: a shared CA, each node's own
// certificate. Peers are addressed by IP and port, so a peer is accepted
// when its certificate chains to the CA; host names are not checked (the
// CA is the cluster's own).
type clusterTLS struct {
	server, client *tls.Config
}

func (n *Node) loadClusterTLS() (*clusterTLS, error) {
	t := n.cfg.ClusterTLS
	if t == nil {
		return nil, nil
	}
	caPEM, err := os.ReadFile(n.cfg.Path(t.CA))
	if err != nil {
		return nil, fmt.Errorf("cluster_tls.ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster_tls.ca: no PEM certificate in %s", t.CA)
	}
	cert, err := tls.LoadX509KeyPair(n.cfg.Path(t.Cert), n.cfg.Path(t.Key))
	if err != nil {
		return nil, fmt.Errorf("cluster_tls: %w", err)
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("cluster_tls: peer sent no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, b := range raw {
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return err
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	base := tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		InsecureSkipVerify: true, VerifyPeerCertificate: verify} // chain checked by verify, names not used
	server, client := base.Clone(), base.Clone()
	server.ClientAuth = tls.RequireAnyClientCert // verified by verify
	return &clusterTLS{server: server, client: client}, nil
}
