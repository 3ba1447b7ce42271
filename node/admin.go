package node

import (
	"encoding/json"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pingora-go/pingora-go/proxy"
)

// Status is the /status document.
type Status struct {
	Node      NodeStatus             `json:"node"`
	Listeners []ListenerStatus       `json:"listeners"`
	Config    *appliedConfig         `json:"config"`
	Proxy     ProxyStatus            `json:"proxy"`
	Upstreams []proxy.UpstreamStatus `json:"upstreams"`
}

// NodeStatus identifies the node.
type NodeStatus struct {
	Name          string    `json:"name"`
	Version       string    `json:"version"`
	GoVersion     string    `json:"go_version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	AdminAddr     string    `json:"admin_addr"`
	Ready         bool      `json:"ready"`
	Draining      bool      `json:"draining"`
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

// Status returns the node's status document.
func (n *Node) Status() Status {
	st := Status{
		Node: NodeStatus{
			Name: n.cfg.Name, Version: n.opts.Version, GoVersion: runtime.Version(),
			StartedAt: n.started.UTC(), UptimeSeconds: time.Since(n.started).Seconds(),
			AdminAddr: n.AdminAddr(), Ready: n.ready.Load(), Draining: n.srv.Draining(),
		},
		Config: n.applied.Load(),
		Proxy:  ProxyStatus{ActiveConnections: n.srv.ActiveConns()},
	}
	n.mu.Lock()
	for _, b := range n.listeners {
		st.Listeners = append(st.Listeners, ListenerStatus{Name: b.cfg.Name, Addr: b.ln.Addr().String(), TLS: b.lc.TLS != nil, H2C: b.lc.H2C})
	}
	n.mu.Unlock()
	tbl := n.router.Table()
	st.Upstreams = tbl.Upstreams()
	st.Proxy.Routes = tbl.Routes()
	return st
}

func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !n.ready.Load() || n.applied.Load() == nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
