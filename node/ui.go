package node

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/node/config"
)

// The cluster page (issue 17): GET /ui serves one page embedded in the
// binary (HTML, CSS and JS; no build step, no CDN, works offline). It
// polls GET /v1/cluster, where the serving node gathers every member's
// /status itself, server side, with a short timeout: the browser needs
// to reach one node only (members' admin ports are often not reachable
// from an operator's browser, and a page fetching each one would need
// CORS on all of them), and a member that does not answer costs one
// timeout on the server, not a hung page.
//
// Access: the page and /v1/cluster only read, like /status, /metrics and
// GET /v1/config, which the admin API serves without a token (Prometheus
// scrapes them); writes keep their rule (admin token, or loopback without
// one). So the page needs no credential and keeps none: no token in a
// URL, a cookie or the page's storage that a browser could leak, and no
// write a page could be tricked into sending. It is served with a strict
// Content-Security-Policy (its own scripts only, no framing).

//go:embed ui
var uiFiles embed.FS

// clusterFetchTimeout bounds fetching one member's /status for
// /v1/cluster; members are asked at once, so it bounds the whole answer.
const clusterFetchTimeout = time.Second

// ClusterView is GET /v1/cluster: every member as the serving node sees it
// in gossip, with the member's own /status when it answered.
type ClusterView struct {
	// Node is the serving node's name.
	Node    string          `json:"node"`
	Time    time.Time       `json:"time"`
	Members []ClusterMember `json:"members"`
}

// ClusterMember is one member of a ClusterView.
type ClusterMember struct {
	membership.Member
	// RingShare is the member's share of the ring's keys (0 to 1).
	RingShare float64 `json:"ring_share"`
	// Self marks the serving node.
	Self bool `json:"self"`
	// Status is the member's /status; nil when it was not asked (not
	// alive, or no admin address advertised) or did not answer.
	Status *Status `json:"status,omitempty"`
	// Error says why Status is missing.
	Error string `json:"error,omitempty"`
}

func (n *Node) registerUI(mux *http.ServeMux) {
	mux.HandleFunc("GET /ui", n.uiFile("ui/index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /ui/app.js", n.uiFile("ui/app.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /ui/style.css", n.uiFile("ui/style.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		v := n.sharedClusterView(r.Context())
		if code, _ := n.authorize(r); code != 0 {
			// The view is shared with other requests: redact copies.
			v.Members = slices.Clone(v.Members)
			for i := range v.Members {
				if st := v.Members[i].Status; st != nil {
					cp := *st
					n.redactKeys(&cp)
					v.Members[i].Status = &cp
				}
			}
		}
		writeJSON(w, http.StatusOK, v)
	})
}

// uiFile serves one embedded file of the page.
func (n *Node) uiFile(name, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := uiFiles.ReadFile(name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		w.Write(b)
	}
}

// viewCache coalesces GET /v1/cluster: each request made this node ask
// every member for its /status, so clients asking at once (every open
// cluster page, or anyone who reaches the admin port, which needs no
// token to read) multiplied the requests to the other members' admin
// ports: 512 connections asking at once (the admin API's limit) kept
// 512 fetches open on each member, filling its own admin connections. A
// request that comes while a gathering runs waits for it, and one within
// viewReuse of the last gets that one's view: at most one gathering runs
// on a node at a time, whatever the number of clients.
type viewCache struct {
	mu       sync.Mutex
	last     ClusterView
	at       time.Time                                       // when last was gathered; zero: never
	inflight chan struct{}                                   // closed when the gathering running ends
	waiters  int                                             // requests waiting for it (for tests)
	fetch    func(context.Context, string) (*Status, string) // nil: fetchStatus with client (tests count calls)
	client   *http.Client                                    // made on first use: newStatusClient
}

// viewReuse is how long a gathered view answers later requests: under the
// page's refresh (1.5 s), so each open page still sees fresh figures.
const viewReuse = 500 * time.Millisecond

// sharedClusterView returns a view gathered by a request that came at the
// same time, or within viewReuse, or gathers it. The gathering does not
// end with the request that started it (others may wait on it); it is
// bounded by clusterFetchTimeout.
func (n *Node) sharedClusterView(ctx context.Context) ClusterView {
	c := &n.views
	c.mu.Lock()
	if !c.at.IsZero() && time.Since(c.at) < viewReuse {
		v := c.last
		c.mu.Unlock()
		return v
	}
	if ch := c.inflight; ch != nil {
		c.waiters++
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		c.mu.Lock()
		c.waiters--
		v := c.last
		c.mu.Unlock()
		return v
	}
	ch := make(chan struct{})
	c.inflight = ch
	c.mu.Unlock()
	v := n.clusterView(context.WithoutCancel(ctx))
	c.mu.Lock()
	c.last, c.at, c.inflight = v, time.Now(), nil
	c.mu.Unlock()
	close(ch)
	return v
}

// clusterView gathers the members and, at once, the /status of each
// live member with an admin address (this node's own without a request).
func (n *Node) clusterView(ctx context.Context) ClusterView {
	self := n.Status()
	v := ClusterView{Node: n.cfg.Name, Time: time.Now().UTC()}
	mc := n.Members()
	if mc == nil { // a standalone node: itself only
		m := membership.Member{Name: n.cfg.Name, State: membership.Alive, LastChange: self.Node.StartedAt}
		m.Meta.Version = self.Node.Version
		v.Members = []ClusterMember{{Member: m, RingShare: 1, Self: true, Status: &self}}
		return v
	}
	var shares map[string]float64
	if self.Ring != nil {
		shares = self.Ring.Shares
	}
	ctx, cancel := context.WithTimeout(ctx, clusterFetchTimeout)
	defer cancel()
	n.views.mu.Lock()
	fetch := n.views.fetch
	if n.views.client == nil {
		n.views.client = newStatusClient()
	}
	client := n.views.client
	n.views.mu.Unlock()
	if fetch == nil {
		fetch = func(ctx context.Context, addr string) (*Status, string) { return fetchStatus(ctx, client, addr) }
	}
	members := mc.Members()
	v.Members = make([]ClusterMember, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		cm := &v.Members[i]
		*cm = ClusterMember{Member: m, RingShare: shares[m.Name], Self: m.Name == n.cfg.Name}
		switch {
		case cm.Self:
			cm.Status = &self
		case m.State != membership.Alive && m.State != membership.Suspect:
			cm.Error = fmt.Sprintf("not asked: the member is %s", m.State)
		case m.Meta.Addrs.Admin == "":
			cm.Error = "not asked: it advertises no admin address (admin_addr on loopback with remote peers)"
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				cm.Status, cm.Error = fetch(ctx, m.Meta.Addrs.Admin)
			}()
		}
	}
	wg.Wait()
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Name < v.Members[j].Name })
	return v
}

// newStatusClient returns the client that fetches members' /status. It
// follows no redirect: the address is whatever the member gossips, and
// the answer is read from it alone.
func newStatusClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// fetchStatus asks the admin API at addr for its /status. addr is what the
// member gossips (anyone who reaches a gossip port without gossip_key can
// be a member), so it must be a host:port and nothing more: an address
// such as "169.254.169.254/latest/meta-data/x?" made this node GET any
// path of any server, following its redirects.
func fetchStatus(ctx context.Context, client *http.Client, addr string) (*Status, string) {
	if err := checkAdminAddr(addr); err != nil {
		return nil, "not asked: " + err.Error()
	}
	u := url.URL{Scheme: "http", Host: addr, Path: "/status"}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "unreachable: " + err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "answered " + resp.Status
	}
	var st Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&st); err != nil {
		return nil, "bad /status: " + err.Error()
	}
	return &st, ""
}

// checkAdminAddr accepts a gossiped admin address that is host:port with
// a numeric port and a host that is an IP address or a DNS name.
func checkAdminAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("the admin address %q it gossips is not host:port", addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("the admin address %q it gossips has no valid port", addr)
	}
	if _, err := netip.ParseAddr(host); err != nil && !config.ValidHostname(host) {
		return fmt.Errorf("the admin address %q it gossips has no valid host", addr)
	}
	return nil
}
