package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/membership"
	"github.com/pingora-go/pingora-go/proxy"
	"github.com/pingora-go/pingora-go/ratelimit"
)

// Status is the /status document.
type Status struct {
	Node      NodeStatus             `json:"node"`
	Listeners []ListenerStatus       `json:"listeners"`
	Config    *appliedConfig         `json:"config"`
	Proxy     ProxyStatus            `json:"proxy"`
	Upstreams []proxy.UpstreamStatus `json:"upstreams"`
	// Gossip, Members and Ring are present when the node gossips.
	Gossip  *GossipStatus          `json:"gossip,omitempty"`
	Members []membership.Member    `json:"members,omitempty"`
	Ring    *membership.RingStatus `json:"ring,omitempty"`
	// Raft is present when the config is replicated (data_dir set).
	Raft *consensus.Status `json:"raft,omitempty"`
	// Traffic is the last seconds' requests, errors and latency (traffic.go).
	Traffic *TrafficStatus `json:"traffic,omitempty"`
	// RateLimits is present when the cluster config has rate_limits: each
	// rule, its keys, and a global rule's busiest keys with their owners.
	RateLimits *ratelimit.Status `json:"rate_limits,omitempty"`
	// Cache is the HTTP cache: both tiers, the last minute's hit ratio,
	// calls to key owners in flight.
	Cache *CacheStatus `json:"cache,omitempty"`
}

// GossipStatus is the node's own gossip identity, how joining the seeds
// goes, and which peers lack its latest metadata.
type GossipStatus struct {
	Self        string                `json:"self"`
	Addr        string                `json:"addr"`
	Join        membership.JoinStatus `json:"join"`
	MetaPending []string              `json:"meta_pending,omitempty"`
}

// NodeStatus identifies the node.
type NodeStatus struct {
	Name          string    `json:"name"`
	Version       string    `json:"version"`
	Commit        string    `json:"commit,omitempty"`
	GoVersion     string    `json:"go_version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	AdminAddr     string    `json:"admin_addr"`
	// Ready is what /readyz answers; NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// ReadyNote qualifies a ready node: it gave up catching up with the
	// raft leader after catch_up_timeout and serves what it has.
	ReadyNote string `json:"ready_note,omitempty"`
	Draining  bool   `json:"draining"`
	// LastReload is the outcome of the last SIGHUP (none since start: absent).
	LastReload *ReloadStatus `json:"last_reload,omitempty"`
}

// ListenerStatus is one bound listener.
type ListenerStatus struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	TLS  bool   `json:"tls"`
	H2C  bool   `json:"h2c"`
}

// ProxyStatus holds engine figures.
type ProxyStatus struct {
	ActiveConnections int `json:"active_connections"`
	Routes            int `json:"routes"`
}

// shownAddr is a listener's address as /status shows it: the configured
// host with the bound port (port 0 picks one). Go binds "0.0.0.0:28080"
// as one dual-stack socket and names it "[::]:28080", which is not what
// the operator wrote; a configured ":28080" (no host) shows as bound.
func shownAddr(configured, bound string) string {
	host, _, err := net.SplitHostPort(configured)
	_, port, err2 := net.SplitHostPort(bound)
	if err != nil || err2 != nil || host == "" {
		return bound
	}
	return net.JoinHostPort(host, port)
}

// Status returns the node's status document.
func (n *Node) Status() Status {
	st := Status{
		Node: NodeStatus{
			Name: n.cfg.Name, Version: n.opts.Version, Commit: n.opts.Commit, GoVersion: runtime.Version(),
			StartedAt: n.started.UTC(), UptimeSeconds: time.Since(n.started).Seconds(),
			AdminAddr: n.AdminAddr(), Draining: n.srv.Draining(), LastReload: n.lastReload.Load(),
		},
		Config: n.applied.Load(),
		Proxy:  ProxyStatus{ActiveConnections: n.srv.ActiveConns()},
	}
	n.mu.Lock()
	for _, b := range n.listeners {
		st.Listeners = append(st.Listeners, ListenerStatus{Name: b.cfg.Name, Addr: shownAddr(b.cfg.Addr, b.ln.Addr().String()), TLS: b.lc.TLS != nil, H2C: b.lc.H2C})
	}
	n.mu.Unlock()
	if mc := n.Members(); mc != nil {
		ms := mc.Status()
		st.Gossip = &GossipStatus{Self: ms.Self, Addr: ms.Addr, Join: ms.Join, MetaPending: ms.MetaPending}
		st.Members, st.Ring = ms.Members, &ms.Ring
	}
	if s := n.Store(); s != nil {
		rs := s.Status()
		st.Raft = &rs
	}
	if rl := n.LimitsStatus(); len(rl.Rules) > 0 {
		st.RateLimits = &rl
	}
	tbl := n.router.Table()
	st.Upstreams = tbl.Upstreams()
	st.Proxy.Routes = tbl.Routes()
	st.Cache = n.cacheStatus()
	st.Node.NotReady = n.notReady()
	st.Node.Ready = st.Node.NotReady == ""
	if st.Node.Ready {
		st.Node.ReadyNote = n.catchUpNote()
		if n.handedOff.Load() {
			st.Node.ReadyNote = n.handOffNote()
		}
	}
	st.Traffic = n.traffic.status()
	return st
}

func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st := n.Status()
		if code, _ := n.authorize(r); code != 0 {
			n.redactKeys(&st)
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if why := n.notReady(); why != "" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": why})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.HandleFunc("POST /v1/upstreams/{upstream}/peers/{addr}/{action}", n.adminWrite(n.setPeer))
	n.registerConfigAPI(mux)
	n.registerCacheAPI(mux)
	n.registerLeaveAPI(mux)
	n.registerUI(mux)
	// Go profiles (CPU, heap, allocations, goroutines, mutex), guarded like
	// writes: a profile reveals internals and costs CPU while it runs.
	mux.HandleFunc("GET /debug/pprof/", n.adminWrite(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/profile", n.adminWrite(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/trace", n.adminWrite(pprof.Trace))
	mux.HandleFunc("GET /debug/pprof/symbol", n.adminWrite(pprof.Symbol))
	return n.rebindGuard(mux)
}

// notReady says why the node should not get traffic, or "" when it
// should: it is starting or draining, its seeds refused it (refusedJoin),
// it has no cluster config yet, it
// has not caught up with the raft leader since it started or re-joined
// (catchingUp), or its config routes nothing (every request would get
// 404). There is no
// exception for a node started without a cluster config on purpose: it
// too would answer 404 (issue 12).
func (n *Node) notReady() string {
	switch {
	case n.shutdown.Load():
		return "draining"
	case !n.ready.Load():
		return "starting"
	}
	if why := n.refusedJoin(); why != "" {
		return why
	}
	a := n.applied.Load()
	if a == nil {
		return n.noConfigYet()
	}
	if why := n.catchingUp(); why != "" {
		return why
	}
	if n.router.Table().Routes() == 0 {
		return fmt.Sprintf("cluster config version %d has no routes: every request would get 404", a.Version)
	}
	return ""
}

// noConfigYet says why a node has no cluster config yet. With raft and no
// leader nor raft state, it waits for a cluster to form or to be added:
// a new host whose only seed was mistyped as its own address showed "no
// cluster config applied yet" and nothing on what it waited for.
func (n *Node) noConfigYet() string {
	const none = "no cluster config applied yet"
	rs := n.Store()
	if rs == nil {
		return none
	}
	st := rs.Status()
	if st.LeaderID != "" || st.LastIndex > 0 {
		return none
	}
	seen := []string{}
	if mc := n.Members(); mc != nil {
		for _, m := range mc.Members() {
			if m.State == membership.Alive {
				seen = append(seen, m.Name)
			}
		}
	}
	if len(seen) == 0 {
		seen = append(seen, n.cfg.Name)
	}
	sort.Strings(seen)
	join := "none"
	if len(n.cfg.Join) > 0 {
		join = strings.Join(n.cfg.Join, ", ")
	}
	if want := n.cfg.Bootstrap(); want > 1 {
		return fmt.Sprintf("%s: no raft leader yet; a new cluster forms once bootstrap_expect (%d) servers see each other "+
			"(gossip sees %d: %s), an existing one's leader adds this node once it joins it: check join (%s)",
			none, want, len(seen), strings.Join(seen, ", "), join)
	}
	return fmt.Sprintf("%s: no raft leader yet; the cluster's leader adds this node once it joins it (gossip sees %d: %s): check join (%s)",
		none, len(seen), strings.Join(seen, ", "), join)
}

// refusedJoin says why a node that has not joined its cluster is not
// ready when its seeds answered and turned it away
// (membership.JoinStatus.Refused: another gossip_key or cluster_name, or
// a seed that is not a gossip port), or "". Retrying does not heal that,
// and the node would serve on its own: its own file's config or an old
// one from its data_dir, with a cache and rate limits of its own, behind
// a load balancer that takes it for one of the cluster's nodes. A node
// whose seeds do not answer (down, or cut off) is not refused: readiness
// does not wait on the network for ever (catchingUp).
func (n *Node) refusedJoin() string {
	mc := n.Members()
	if mc == nil {
		return ""
	}
	js := mc.JoinStatus()
	if js.Joined || !js.Refused {
		return ""
	}
	return "not joined: the seeds refused this node (check that its cluster_name and gossip_key are the cluster's, " +
		"and that join lists gossip ports; the join status has each seed's error)"
}

// catchingUp says why a node with replicated config is not ready yet
// while it catches up with the raft leader (consensus.Store.CatchUp): the
// config it serves may be older than the cluster's. "" when it has caught
// up, or gave up after the timeout (catchUpNote).
func (n *Node) catchingUp() string {
	st := n.Store()
	if st == nil {
		return ""
	}
	cu := st.CatchUp()
	switch {
	case !cu.Waiting:
		return ""
	case cu.LeaderCommit == 0:
		return fmt.Sprintf("catching up: waiting to hear the raft leader's commit index, applied %d here (ready anyway after %s)", cu.Applied, cu.Timeout)
	}
	return fmt.Sprintf("catching up: applied %d of leader's %d", cu.Applied, cu.LeaderCommit)
}

// handOffNote says why a ready process shows no gossip and no raft: it
// handed the node's cluster identity over to its successor in a graceful
// upgrade and serves on until that one serves, then drains. The node
// stays ready through the upgrade: /readyz, on the admin socket both
// processes share, must not send it out of the load balancer.
func (n *Node) handOffNote() string {
	return fmt.Sprintf("handing over to its successor (pid %d), which holds gossip and raft now: "+
		"this process serves until the successor does, then drains; ask again for the successor's status", n.successor.Load())
}

// catchUpNote says that a ready node gave up catching up with the leader,
// or "".
func (n *Node) catchUpNote() string {
	st := n.Store()
	if st == nil {
		return ""
	}
	cu := st.CatchUp()
	switch {
	case !cu.GaveUp:
		return ""
	case cu.LeaderCommit == 0:
		return fmt.Sprintf("not caught up: no word from a raft leader within %s, serving the config it has, which may be behind", cu.Timeout)
	}
	return fmt.Sprintf("not caught up: applied %d of leader's %d after %s, serving the config it has, which is behind", cu.Applied, cu.LeaderCommit, cu.Timeout)
}

// bearer returns the credentials of an "Authorization: Bearer" value; the
// scheme is matched without regard to case (RFC 9110 11.1).
func bearer(v string) (string, bool) {
	const scheme = "Bearer "
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimLeft(v[len(scheme):], " "), true
}

// tokenMatches reports whether got is the admin token want.
// subtle.ConstantTimeCompare of the two returns at once when their lengths
// differ, which tells a client that times it the token's length; the
// SHA-256 digests it compares here are 32 bytes whatever the token.
func tokenMatches(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// adminWrite guards a state-changing admin handler: with an admin token
// configured the request must carry it; without one, only loopback
// clients may change state.
func (n *Node) adminWrite(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if code, why := n.authorize(r); code != 0 {
			writeJSON(w, code, map[string]string{"error": why})
			return
		}
		h(w, r)
	}
}

// authorize applies adminWrite's rule to r: it returns 0 when r may change
// state, or the status code and the reason it may not.
func (n *Node) authorize(r *http.Request) (code int, why string) {
	if tok := n.cfg.AdminToken; tok != "" {
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			// A curl user met "missing or wrong admin token" and no word
			// of how the token goes.
			return http.StatusUnauthorized, "missing or wrong admin token: none was sent; send the node's admin_token " +
				"as the header \"Authorization: Bearer TOKEN\""
		}
		if !tokenMatches(got, tok) {
			return http.StatusUnauthorized, "missing or wrong admin token: the bearer token sent is not this node's admin_token"
		}
	} else if !isLoopback(r.RemoteAddr) {
		return http.StatusForbidden, "admin writes from non-loopback clients need admin_token"
	} else if why := browserForged(r); why != "" {
		return http.StatusForbidden, "refused: " + why + "; admin writes trusted for being from loopback must come from a tool such as curl or pingora-node, not a web page"
	}
	return 0, ""
}

// browserForged says why a request trusted only for coming from loopback
// may have been made by a web page the operator's browser runs, or "":
// any page can make the browser POST to 127.0.0.1:9090 without a CORS
// preflight (a cross-site request), and a page whose DNS name was rebound
// to 127.0.0.1 passes for same-origin. So the Host must name loopback, and
// a browser's Origin or Sec-Fetch-Site must say the request is not
// cross-site. curl and the CLI send neither field.
func browserForged(r *http.Request) string {
	if !loopbackHost(r.Host) {
		return fmt.Sprintf("Host %q does not name a loopback address (DNS rebinding?)", r.Host)
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return "Sec-Fetch-Site is " + site
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return fmt.Sprintf("Origin %q is not this admin server", o)
		}
	}
	return ""
}

// loopbackHost reports whether a Host field names this machine by a
// loopback IP or "localhost" (with or without a port).
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// setPeer handles POST /v1/upstreams/{upstream}/peers/{addr}/{enable|disable}:
// an operator takes a peer out of rotation (or puts it back) on this node.
// The state survives config swaps that keep the peer.
func (n *Node) setPeer(w http.ResponseWriter, r *http.Request) {
	var disabled bool
	switch r.PathValue("action") {
	case "disable":
		disabled = true
	case "enable":
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "action must be enable or disable"})
		return
	}
	upstream, addr := r.PathValue("upstream"), r.PathValue("addr")
	if err := n.router.SetPeerDisabled(upstream, addr, disabled); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, proxy.ErrNoSuchPeer) {
			code = http.StatusNotFound
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	n.log.Info("peer state set by operator", "upstream", upstream, "peer", addr, "disabled", disabled, "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"upstream": upstream, "peer": addr, "disabled": disabled})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
