package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseTrustedProxy parses one entry of a listener's trusted_proxies: a
// network in CIDR notation ("10.0.0.0/8", "2001:db8::/32") or a single
// address, which stands for itself alone (/32 or /128). A network whose
// address has bits set past its length ("10.0.0.1/8") is refused rather
// than widened in silence: trust is a boundary, and the entry would trust
// far more than the address it names. An IPv4-mapped IPv6 network is
// refused too: clients are matched in their IPv4 form.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP network or address: write a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or one address such as 10.0.0.1", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: an address with a zone cannot be matched; leave the zone out", s)
		}
		s = a.String() + "/" + strconv.Itoa(a.BitLen())
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP network: write a CIDR such as 10.0.0.0/8 or 2001:db8::/32 (%v)", s, err)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 network: IPv4 clients are matched in their IPv4 form, write it as an IPv4 network", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has address bits set past its /%d: the network is %s (write that, or /%d for the one address)", s, p.Bits(), m, p.Addr().BitLen())
	}
	return p, nil
}

// TrustedPrefixes returns the listener's trusted networks, parsed (see
// ParseTrustedProxy); a node file that validated parses.
func (l Listener) TrustedPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range l.TrustedProxies {
		p, err := ParseTrustedProxy(s)
		if err != nil {
			return nil, fmt.Errorf("listener %q: trusted_proxies: %w", l.Name, err)
		}
		out = append(out, p)
	}
	return out, nil
}
