package config

import (
	"net/netip"
	"strings"
	"testing"
)

// TestParseTrustedProxy: networks and single addresses of both families
// parse; anything else is refused with an error naming the entry and
// saying what to write.
func TestParseTrustedProxy(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"10.0.0.0/8":        "10.0.0.0/8",
		" 192.0.2.0/24 ":    "192.0.2.0/24",
		"192.0.2.7":         "192.0.2.7/32",
		"2001:db8::/32":     "2001:db8::/32",
		"2001:db8::1":       "2001:db8::1/128",
		"0.0.0.0/0":         "0.0.0.0/0",
		"::/0":              "::/0",
		"198.51.100.255/32": "198.51.100.255/32",
	}
	for in, want := range good {
		p, err := ParseTrustedProxy(in)
		if err != nil || p != netip.MustParsePrefix(want) {
			t.Errorf("ParseTrustedProxy(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	bad := map[string]string{
		"10.0.0.300/8":        `"10.0.0.300/8" is not an IP network: write a CIDR such as 10.0.0.0/8`,
		"10.0.0.0/33":         `"10.0.0.0/33" is not an IP network`,
		"lb.internal":         `"lb.internal" is not an IP network or address`,
		"":                    `"" is not an IP network or address`,
		"10.0.0.1/8":          `"10.0.0.1/8" has address bits set past its /8: the network is 10.0.0.0/8 (write that, or /32 for the one address)`,
		"2001:db8::1/32":      `the network is 2001:db8::/32`,
		"::ffff:10.0.0.0/104": `IPv4-mapped IPv6 network`,
		"fe80::1%eth0":        `leave the zone out`,
	}
	for in, want := range bad {
		_, err := ParseTrustedProxy(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTrustedProxy(%q) error %v\nwant it to contain %q", in, err, want)
		}
	}
}

// TestNodeTrustedProxies: a listener's trusted_proxies parse into its
// networks; a bad entry fails the node file with its line and key.
func TestNodeTrustedProxies(t *testing.T) {
	doc := strings.Replace(goodNode, "    h2c: true\n", "    h2c: true\n    trusted_proxies: [10.0.0.0/8, 2001:db8::1]\n", 1)
	n, err := ParseNode("n.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	nets, err := n.Listeners[0].TrustedPrefixes()
	if err != nil || len(nets) != 2 || nets[1] != netip.MustParsePrefix("2001:db8::1/128") {
		t.Fatalf("trusted networks %v, %v", nets, err)
	}
	if nets, _ := n.Listeners[1].TrustedPrefixes(); nets != nil {
		t.Fatalf("a listener without trusted_proxies trusts %v", nets)
	}
	bad := strings.Replace(goodNode, "    h2c: true\n", "    h2c: true\n    trusted_proxies:\n      - 10.0.0.0/8\n      - 10.0.0.1/8\n", 1)
	_, err = ParseNode("n.yaml", []byte(bad))
	want := `n.yaml:9: listeners[0].trusted_proxies[1]: "10.0.0.1/8" has address bits set past its /8`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v\nwant it to contain %q", err, want)
	}
}
