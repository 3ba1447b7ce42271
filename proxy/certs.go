package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// CertFile names a certificate chain and its key, both PEM files.
type CertFile struct {
	CertFile string
	KeyFile  string
}

// CertStore holds the certificates of a TLS listener and picks one by SNI.
// Reload re-reads the files; handshakes that start afterwards use the new
// certificates, without a restart.
type CertStore struct {
	files []CertFile
	set   atomic.Pointer[certSet]
	h2    *tls.Config // offers h2 and http/1.1; shared so session tickets resume
	h1    *tls.Config // offers http/1.1 only
}

type certSet struct {
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate // key: ".example.com"
	first    *tls.Certificate
}

// NewCertStore loads files. The first certificate is the default for
// clients that send no SNI or an unknown name.
func NewCertStore(files []CertFile) (*CertStore, error) {
	if len(files) == 0 {
		return nil, errors.New("proxy: TLS listener needs at least one certificate")
	}
	cs := newCertStore()
	cs.files = append([]CertFile(nil), files...)
	if err := cs.Reload(); err != nil {
		return nil, err
	}
	return cs, nil
}

// NewCertStoreFromCerts builds a store from certificates already loaded
// (for embedding and tests); Reload keeps them.
func NewCertStoreFromCerts(certs []tls.Certificate) (*CertStore, error) {
	set, err := buildCertSet(certs)
	if err != nil {
		return nil, err
	}
	cs := newCertStore()
	cs.set.Store(set)
	return cs, nil
}

func newCertStore() *CertStore {
	cs := &CertStore{}
	get := func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return cs.Certificate(hello.ServerName), nil
	}
	cs.h2 = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}, GetCertificate: get}
	cs.h1 = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}, GetCertificate: get}
	return cs
}

// Reload re-reads every file. On error the certificates in use stay.
func (cs *CertStore) Reload() error {
	if len(cs.files) == 0 {
		return nil
	}
	certs := make([]tls.Certificate, 0, len(cs.files))
	for _, f := range cs.files {
		c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return fmt.Errorf("proxy: load certificate %s: %w", f.CertFile, err)
		}
		certs = append(certs, c)
	}
	set, err := buildCertSet(certs)
	if err != nil {
		return err
	}
	cs.set.Store(set)
	return nil
}

func buildCertSet(certs []tls.Certificate) (*certSet, error) {
	set := &certSet{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for i := range certs {
		c := &certs[i]
		leaf := c.Leaf
		if leaf == nil {
			if len(c.Certificate) == 0 {
				return nil, errors.New("proxy: empty certificate")
			}
			var err error
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("proxy: parse certificate: %w", err)
			}
			c.Leaf = leaf
		}
		if set.first == nil {
			set.first = c
		}
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if strings.HasPrefix(n, "*.") {
				if _, dup := set.wildcard[n[1:]]; !dup {
					set.wildcard[n[1:]] = c
				}
			} else if _, dup := set.exact[n]; !dup {
				set.exact[n] = c
			}
		}
		for _, ip := range leaf.IPAddresses {
			if _, dup := set.exact[ip.String()]; !dup {
				set.exact[ip.String()] = c
			}
		}
	}
	return set, nil
}

// Certificate returns the certificate for a server name: an exact name,
// then a wildcard one label up, then the default.
func (cs *CertStore) Certificate(name string) *tls.Certificate {
	set := cs.set.Load()
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if c := set.exact[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i >= 0 {
		if c := set.wildcard[name[i:]]; c != nil {
			return c
		}
	}
	return set.first
}

func (cs *CertStore) serverConfig(h2 bool) *tls.Config {
	if h2 {
		return cs.h2
	}
	return cs.h1
}
