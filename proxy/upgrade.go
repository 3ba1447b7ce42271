package proxy

import (
	"strings"

	"golang.org/x/net/http/httpguts"
)

// defaultUpgrades is Session.Upgrades when neither a route nor a phase
// sets it. It is shared: never modified.
var defaultUpgrades = []string{"websocket"}

// neverUpgrade reports a protocol no Upgrade may switch to, whatever a
// route or phase allows: HTTP itself (h2c, h2, "HTTP/2.0"). A client that
// upgraded a tunnel to HTTP would speak it straight to the upstream, past
// routing, phases and limits (the "h2c smuggling" attack).
func neverUpgrade(name string) bool {
	return strings.EqualFold(name, "h2c") || strings.EqualFold(name, "h2") || strings.EqualFold(name, "http")
}

// allowedUpgrade returns the protocols of offer, an Upgrade field value
// (comma-separated protocol-name ["/" protocol-version]), whose name is in
// allowed (without case) and not a neverUpgrade one, in the client's order
// and joined for the upstream's Upgrade field; "" when none is, and the
// request goes as a plain one. Malformed members are dropped.
func allowedUpgrade(offer string, allowed []string) string {
	if offer == "" || len(allowed) == 0 {
		return ""
	}
	var keep []string
	for offer != "" {
		var p string
		p, offer, _ = strings.Cut(offer, ",")
		p = strings.Trim(p, " \t")
		name, version, hasVersion := strings.Cut(p, "/")
		if !httpguts.ValidHeaderFieldName(name) || hasVersion && !httpguts.ValidHeaderFieldName(version) ||
			neverUpgrade(name) || !listsName(allowed, name) {
			continue
		}
		keep = append(keep, p)
	}
	return strings.Join(keep, ", ")
}

func listsName(names []string, name string) bool {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// upgradeAccepted reports whether a 101 response's Upgrade field (got)
// names one protocol, and one of those the request offered (sent, as
// allowedUpgrade returned it). An upstream that switches to something
// else, or answers 101 to a plain request, is not followed.
func upgradeAccepted(sent string, got []string) bool {
	if sent == "" || len(got) != 1 {
		return false
	}
	name, _, _ := strings.Cut(strings.Trim(got[0], " \t"), "/")
	if neverUpgrade(name) {
		return false
	}
	for sent != "" {
		var p string
		p, sent, _ = strings.Cut(sent, ",")
		if n, _, _ := strings.Cut(strings.Trim(p, " \t"), "/"); strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}
