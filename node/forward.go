package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/wire"
)

// A write sent to a follower's admin API (PUT /v1/config, POST
// /v1/force-leave, a leaving node's own removal, a linearizable GET
// /v1/config) needs the raft leader. The follower calls the leader over
// the cluster port, with the cluster's mutual TLS (issue 13), never its
// admin API: that may be on loopback, and would skip the cluster's TLS.
// The leader runs the request through the code path of a local one and
// answers an adminAnswer, which the follower writes to its client as it
// is, so an answer reads the same through any node. The leader's
// handlers never forward, so no request is forwarded twice; the caller's
// deadline travels in the call.
const (
	rpcConfigPut  = "node.config.put"
	rpcConfigGet  = "node.config.get" // a linearizable read
	rpcForceLeave = "node.force_leave"
)

// forwardTimeout bounds a request sent on to the leader, the call and the
// leader's work together; the deadline travels in the call, so the leader
// stops when the follower does.
const forwardTimeout = 10 * time.Second

// rpcConfigPutReq is a PUT /v1/config sent on to the leader.
type rpcConfigPutReq struct {
	Body       []byte `msgpack:"b"`
	IfVersion  int64  `msgpack:"i"` // -1: no If-Match
	AllowEmpty bool   `msgpack:"e"`
	From       string `msgpack:"f"` // the follower's name, for the leader's log
	Client     string `msgpack:"c"` // the admin client's address, for the leader's log
}

// rpcForceLeaveReq asks the leader to take Name out of raft and gossip. A
// node that leaves for good sends its own name (Name == From), which the
// leader accepts although the node is alive.
type rpcForceLeaveReq struct {
	Name   string `msgpack:"n"`
	From   string `msgpack:"f"`
	Client string `msgpack:"c"`
	// SeenGone: the follower that forwards the request saw Name dead or
	// gone (it refuses members it sees alive). A leader that still sees
	// it alive waits a little for gossip to agree (see forceLeave).
	SeenGone bool `msgpack:"g,omitempty"`
}

// adminAnswer is the outcome of an admin request as the admin API
// answers it: Status is its code (200, 400, 404, 409, 413, 503, 500), and
// the body is Error (with Current on a version conflict), Doc or Leave.
type adminAnswer struct {
	Status  int          `msgpack:"s"`
	Error   string       `msgpack:"e,omitempty"`
	Current *int64       `msgpack:"v,omitempty"`
	Doc     *ConfigDoc   `msgpack:"d,omitempty"`
	Leave   *LeaveResult `msgpack:"l,omitempty"`
	// NotLeader: the node that answered is not the leader (it lost
	// leadership, or never had it) and proposed nothing, so the request
	// may be sent again to the leader once one is known (see
	// forwardHold). A leader of an older version never sets it.
	NotLeader bool `msgpack:"nl,omitempty"`
}

// write answers the admin client with a.
func (a adminAnswer) write(w http.ResponseWriter) {
	switch {
	case a.Error != "" && a.Current != nil:
		writeJSON(w, a.Status, map[string]any{"error": a.Error, "current_version": *a.Current})
	case a.Doc != nil:
		writeJSON(w, a.Status, a.Doc)
	case a.Leave != nil:
		writeJSON(w, a.Status, a.Leave)
	default:
		writeJSON(w, a.Status, map[string]string{"error": a.Error})
	}
}

// failed is the answer for an error with status code.
func failed(code int, err error) adminAnswer { return adminAnswer{Status: code, Error: err.Error()} }

// storeAnswer classifies an error of the store.
func storeAnswer(err error) adminAnswer {
	var ce *consensus.ConflictError
	switch {
	case errors.As(err, &ce):
		cur := ce.Current
		return adminAnswer{Status: http.StatusConflict, Error: err.Error(), Current: &cur}
	case errors.Is(err, consensus.ErrInvalid):
		return failed(http.StatusBadRequest, err)
	case errors.Is(err, consensus.ErrNotLeader), errors.Is(err, consensus.ErrNoQuorum), errors.Is(err, consensus.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		// A node that knows no leader cannot tell a cluster without
		// quorum from its own isolation (a partition of this host).
		return adminAnswer{Status: http.StatusServiceUnavailable, Error: "no quorum reachable from this node: the cluster has none, or this node is cut off " +
			"from it (then a write through another node may succeed; \"pingora-node status\" on each shows its leader) (" + err.Error() + ")",
			NotLeader: notLeader(err)}
	}
	return failed(http.StatusInternalServerError, err)
}

// notLeader reports whether err says this node is not the leader and
// proposed nothing: it names another leader, or knows none. raft's
// leadership lost after a proposal is not such an error: that write may
// still commit.
func notLeader(err error) bool {
	return errors.Is(err, consensus.ErrNotLeader) || errors.Is(err, consensus.ErrNoLeader)
}

// registerLeaderRPC registers the calls followers make to the leader.
func (n *Node) registerLeaderRPC(srv *wire.Server) {
	wire.HandleFunc(srv, rpcConfigPut, n.leaderConfigPut)
	wire.HandleFunc(srv, rpcConfigGet, n.leaderConfigGet)
	wire.HandleFunc(srv, rpcForceLeave, func(ctx context.Context, req *rpcForceLeaveReq) (*adminAnswer, error) {
		a, _ := n.forceLeave(ctx, req.Name, req.Name == req.From, req.SeenGone, req.Client)
		return &a, nil
	})
}

// leaderConfigPut writes a config a follower sent on: the checks and the
// write of a local PUT /v1/config.
func (n *Node) leaderConfigPut(ctx context.Context, req *rpcConfigPutReq) (*adminAnswer, error) {
	st := n.Store()
	if st == nil {
		a := storeAnswer(consensus.ErrClosed)
		a.NotLeader = true // raft closed here (a hand-off, a stop): nothing proposed
		return &a, nil
	}
	c, code, err := checkConfigBody(req.Body, req.AllowEmpty)
	if err != nil {
		a := failed(code, err)
		return &a, nil
	}
	ctx, span := n.tracing.startForwardedConfigWrite(ctx, req.From)
	d, unchanged, err := writeConfig(ctx, st, req.Body, c, req.IfVersion)
	endConfigWrite(span, d, err, false)
	if err != nil {
		a := storeAnswer(err)
		return &a, nil
	}
	doc := n.writtenDoc(d, unchanged, req.Client, req.From)
	return &adminAnswer{Status: http.StatusOK, Doc: &doc}, nil
}

// leaderConfigGet is a linearizable read for a follower.
func (n *Node) leaderConfigGet(ctx context.Context, _ *rpcEmpty) (*adminAnswer, error) {
	st := n.Store()
	if st == nil {
		a := storeAnswer(consensus.ErrClosed)
		a.NotLeader = true // raft closed here (a hand-off, a stop): nothing proposed
		return &a, nil
	}
	d, ok, err := st.GetConsistent(ctx, clusterDoc)
	switch {
	case err != nil:
		a := storeAnswer(err)
		return &a, nil
	case !ok:
		return &adminAnswer{Status: http.StatusNotFound, Error: "no cluster config written yet"}, nil
	}
	doc := docOf(d)
	return &adminAnswer{Status: http.StatusOK, Doc: &doc}, nil
}

// forwardToLeader sends an admin request that err says needs the leader
// to the leader over the cluster port and writes its answer, holding it
// through an election (see forwardHold). It reports false when err is
// neither *consensus.NotLeaderError nor consensus.ErrNoLeader (nothing was
// written).
func (n *Node) forwardToLeader(w http.ResponseWriter, r *http.Request, body []byte, err error) bool {
	var nl *consensus.NotLeaderError
	first := ""
	switch {
	case errors.As(err, &nl):
		first = nl.LeaderID
	case errors.Is(err, consensus.ErrNoLeader):
	default:
		return false
	}
	var method string
	var req any
	var local func(ctx context.Context) adminAnswer // the request run here, when this node leads by then
	switch {
	case r.Method == http.MethodPut:
		ifVersion, _ := ifMatchVersion(r)            // checked by putConfig
		allowEmpty, _ := queryBool(r, "allow_empty") // checked by readConfigBody
		pr := &rpcConfigPutReq{Body: body, IfVersion: ifVersion, AllowEmpty: allowEmpty, From: n.cfg.Name, Client: r.RemoteAddr}
		method, req = rpcConfigPut, pr
		local = func(ctx context.Context) adminAnswer { a, _ := n.leaderConfigPut(ctx, pr); return *a }
	case r.Method == http.MethodGet:
		method, req = rpcConfigGet, &rpcEmpty{}
		local = func(ctx context.Context) adminAnswer { a, _ := n.leaderConfigGet(ctx, nil); return *a }
	case strings.HasPrefix(r.URL.Path, "/v1/force-leave/"):
		// Forwarded only after this node's own check passed: it sees the
		// member dead or gone.
		fr := &rpcForceLeaveReq{Name: r.PathValue("name"), From: n.cfg.Name, Client: r.RemoteAddr, SeenGone: true}
		method, req = rpcForceLeave, fr
		local = func(ctx context.Context) adminAnswer {
			a, _ := n.forceLeave(ctx, fr.Name, false, true, fr.Client)
			return a
		}
	default:
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
	defer cancel()
	attempt := func(ctx context.Context, leader string) (adminAnswer, string, error) {
		if leader == n.cfg.Name {
			return local(ctx), n.cfg.Name, nil
		}
		a, err := n.callLeader(ctx, leader, method, req)
		return a, leader, err
	}
	log := func(msg string, args ...any) {
		n.log.Debug("admin request to the leader: "+msg, append([]any{"method", method, "client", r.RemoteAddr}, args...)...)
	}
	h := n.hold()
	res := h.holdForLeader(ctx, first, method == rpcConfigGet, attempt, log)
	a := res.a
	switch {
	case errors.Is(res.err, consensus.ErrNoLeader):
		a = storeAnswer(res.err)
	case res.err != nil:
		a = adminAnswer{Status: http.StatusServiceUnavailable, Error: res.err.Error()}
	}
	if tries := res.count(); tries > 1 && (res.err != nil || a.NotLeader) {
		n.log.Warn("admin request to the leader failed through an election", "method", method, "client", r.RemoteAddr,
			"tries", summary(res.tries, ""))
		a.Error = fmt.Sprintf("%s (%d tries in %s waiting for a leader: %s)", a.Error, tries, h.hold, summary(res.tries, outcome(res)))
	}
	if res.by != n.cfg.Name {
		w.Header().Set(forwardedHeader, n.cfg.Name)
	}
	a.write(w)
	return true
}

// hold returns the node's policy for holding a request for a leader.
func (n *Node) hold() holdPolicy {
	if h := n.holdFor.Load(); h != nil {
		return *h
	}
	return n.defaultHold()
}

// errNoLeaderKnown is the error of a request for the leader while none is
// known.
var errNoLeaderKnown = fmt.Errorf("%w: %w", consensus.ErrNoQuorum, consensus.ErrNoLeader)

// errNoClusterAddr: the leader raft names is not (or no longer) in this
// node's member list; nothing was sent.
var errNoClusterAddr = errors.New("it gossips no cluster address this node knows of")

// callLeader calls method on the leader id, found at the cluster address
// it gossips.
func (n *Node) callLeader(ctx context.Context, id, method string, req any) (adminAnswer, error) {
	if id == "" {
		return adminAnswer{}, errNoLeaderKnown
	}
	addr := n.memberCluster(id)
	if addr == "" {
		return adminAnswer{}, fmt.Errorf("cannot forward to the leader %s: %w", id, errNoClusterAddr)
	}
	var a adminAnswer
	if err := n.rpcClient.Call(ctx, addr, method, req, &a); err != nil {
		if errors.Is(err, wire.ErrUnknownMethod) {
			err = fmt.Errorf("it runs a version that takes writes only on its own admin API: %w", err)
		}
		return adminAnswer{}, fmt.Errorf("forwarding to the leader %s at %s: %w", id, addr, err)
	}
	return a, nil
}

// memberCluster returns the cluster address name gossips, or "".
func (n *Node) memberCluster(name string) string {
	if mc := n.Members(); mc != nil && name != "" {
		for _, m := range mc.Members() {
			if m.Name == name {
				return m.Meta.Addrs.Cluster
			}
		}
	}
	return ""
}
