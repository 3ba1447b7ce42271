// Command confhelper is the Go half of scripts/conformance.sh:
//
//	confhelper certs DIR          write ca.pem, cert.pem and key.pem (localhost, 127.0.0.1)
//	confhelper ports N            print N free loopback TCP ports, one a line
//	confhelper origin ADDR        serve HTTP/1.1 on ADDR: 200 and a short text to any request
//	confhelper wait URL TIMEOUT   wait until GET URL answers 200
//	confhelper junit-failures F   print the failed cases of a JUnit report
//
// It uses the standard library only.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: confhelper certs DIR | ports N | origin ADDR | wait URL TIMEOUT | junit-failures FILE")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "certs":
		err = certs(os.Args[2])
	case "ports":
		err = ports(os.Args[2])
	case "junit-failures":
		err = junitFailures(os.Args[2])
	case "origin":
		err = origin(os.Args[2])
	case "wait":
		d := 30 * time.Second
		if len(os.Args) > 3 {
			if d, err = time.ParseDuration(os.Args[3]); err != nil {
				break
			}
		}
		err = wait(os.Args[2], d)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "confhelper:", err)
		os.Exit(1)
	}
}

// certs writes a throwaway CA and a server certificate it signed.
func certs(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pingora-go conformance CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "proxy.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for name, b := range map[string]*pem.Block{
		"ca.pem":   {Type: "CERTIFICATE", Bytes: caDER},
		"cert.pem": {Type: "CERTIFICATE", Bytes: der},
		"key.pem":  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// ports prints n distinct free loopback ports. They are free when printed;
// the script binds them at once.
func ports(arg string) error {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return err
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// origin is the upstream behind the h2spec runs: it reads any request body
// and answers 200 with a short text (h2spec needs at least 5 body bytes
// for its flow-control cases).
func origin(addr string) error {
	srv := &http.Server{
		Addr:              addr,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok: pingora-go conformance origin\n")
		}),
	}
	return srv.ListenAndServe()
}

// wait polls url until it answers 200 or d passes.
func wait(url string, d time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v", url, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// junitFailures prints "package | classname" for each failed case of a
// JUnit report (h2spec -j), one a line.
func junitFailures(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var rep struct {
		Suites []struct {
			Cases []struct {
				Package   string    `xml:"package,attr"`
				ClassName string    `xml:"classname,attr"`
				Failure   *struct{} `xml:"failure"`
				Error     *struct{} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &rep); err != nil {
		return err
	}
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			if c.Failure != nil || c.Error != nil {
				fmt.Printf("%s | %s\n", c.Package, c.ClassName)
			}
		}
	}
	return nil
}
