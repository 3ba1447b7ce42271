package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pingora-go/pingora-go/membership"
)

// leaveTimeout bounds how long POST /v1/leave waits for the leader to take
// this server out of raft.
const leaveTimeout = 15 * time.Second

// LeaveResult answers POST /v1/leave and POST /v1/force-leave/{name}.
type LeaveResult struct {
	Name string `json:"name"`
	// Raft is "removed", "not a server" (not in the raft configuration),
	// "only server" (a one-server cluster has nothing to leave) or
	// "no raft" (the node does not replicate its config).
	Raft string `json:"raft"`
	// Members is "left" (dropped from every member list), "leaving" (the
	// node leaves gossip as it stops), "not a member" or "no gossip".
	Members string `json:"members"`
}

func (n *Node) registerLeaveAPI(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/leave", n.adminWrite(n.postLeave))
	mux.HandleFunc("POST /v1/force-leave/{name}", n.adminWrite(n.postForceLeave))
}

// Left receives once POST /v1/leave took the node out of raft: the
// caller stops the node (which leaves gossip) and exits 0.
func (n *Node) Left() <-chan struct{} { return n.left }

// postLeave handles POST /v1/leave: this node leaves the cluster for good,
// as Consul's "leave": the leader takes it out of raft (after this node
// hands leadership over), then the node stops, leaving gossip, and the
// process exits 0. If raft cannot take it out, it answers 503 and runs on.
func (n *Node) postLeave(w http.ResponseWriter, r *http.Request) {
	if !n.leaving.CompareAndSwap(false, true) {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "already leaving"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), leaveTimeout)
	defer cancel()
	res, err := n.leaveRaft(ctx)
	if err != nil {
		n.leaving.Store(false)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "leave: " + err.Error() + " (the node keeps running)"})
		return
	}
	res.Members = "no gossip"
	if n.Members() != nil {
		res.Members = "leaving"
	}
	n.log.Info("leaving the cluster on request", "client", r.RemoteAddr, "raft", res.Raft)
	writeJSON(w, http.StatusOK, res)
	n.left <- struct{}{} // cap 1, sent once: leaving is set
}

// leaveRaft takes this server out of the raft configuration: a leader
// first hands leadership over, then the leader removes it.
func (n *Node) leaveRaft(ctx context.Context) (LeaveResult, error) {
	res := LeaveResult{Name: n.cfg.Name, Raft: "no raft"}
	st := n.Store()
	if st == nil {
		return res, nil
	}
	var last error
	for {
		rs := st.Status()
		switch {
		case st.IsLeader() && len(rs.Voters) <= 1 && len(rs.NonVoters) == 0:
			res.Raft = "only server"
			return res, nil
		case st.IsLeader():
			last = st.LeadershipTransfer()
		default:
			last = n.askLeaderToRemove(ctx)
			if last == nil {
				res.Raft = "removed"
				return res, nil
			}
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("the leader did not remove this server within %s: %w", leaveTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// askLeaderToRemove asks the leader, over the cluster RPC, to take this
// server out of raft (a force-leave that names the caller, which the
// leader accepts although this node is alive).
func (n *Node) askLeaderToRemove(ctx context.Context) error {
	id, _ := n.Store().Leader()
	a, err := n.callLeader(ctx, id, rpcForceLeave, &rpcForceLeaveReq{Name: n.cfg.Name, From: n.cfg.Name})
	if err != nil {
		return err
	}
	if a.Status != http.StatusOK {
		return fmt.Errorf("leader %s answered %d: %s", id, a.Status, a.Error)
	}
	return nil
}

// postForceLeave handles POST /v1/force-leave/{name}: a member that is
// dead or gone is taken out of raft (by the leader: a follower forwards)
// and out of every node's member list. A member seen alive is refused
// (409).
func (n *Node) postForceLeave(w http.ResponseWriter, r *http.Request) {
	a, err := n.forceLeave(r.Context(), r.PathValue("name"), false, false, r.RemoteAddr)
	if err != nil && n.forwardToLeader(w, r, nil, err) {
		return
	}
	a.write(w)
}

// forceLeave takes name out of raft and gossip, refusing a member seen
// alive unless it is leaving for good and asked for itself (leaving; see
// askLeaderToRemove). seenGone says a follower forwarded the request after
// seeing the member dead or gone: memberlist declares a death on each node
// at its own time, so the leader may still see it alive for a moment, and
// waits up to gossipAgreeWait for its own view to agree before refusing.
// It returns the store's error too when raft refused, so a follower can
// forward.
func (n *Node) forceLeave(ctx context.Context, name string, leaving, seenGone bool, client string) (adminAnswer, error) {
	mc := n.Members()
	if name == n.cfg.Name {
		return adminAnswer{Status: http.StatusConflict, Error: name + " is this node: run \"pingora-node leave\" on it"}, nil
	}
	if !leaving && mc != nil {
		alive := func() bool { return memberAlive(mc, name) }
		if seenGone && stillAlive(ctx, gossipAgreeWait, alive) {
			return adminAnswer{Status: http.StatusConflict, Error: name + " is alive as the leader, " + n.cfg.Name +
				", sees it, though the node asked sees it dead: gossip has not agreed within " + gossipAgreeWait.String() +
				"; if it is stopped, retry in a few seconds"}, nil
		}
		if !seenGone && alive() {
			// Right after a kill -9 (the usual way to get here) gossip
			// has not noticed yet: say so, rather than "stop it first".
			return adminAnswer{Status: http.StatusConflict, Error: name + " is alive as " + n.cfg.Name +
				" sees it: force-leave only removes members that are dead or gone. If you have just stopped or killed it, gossip takes a few seconds to see it dead" +
				" (about 6 s with gossip_profile lan and 3 nodes, up to about 25 s with more): retry then, or watch its STATE in pingora-node members;" +
				" if it is running, stop it first, or run \"pingora-node leave\" on it"}, nil
		}
	}
	res := LeaveResult{Name: name, Raft: "no raft", Members: "no gossip"}
	if st := n.Store(); st != nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		removed, err := st.RemoveServer(ctx, name)
		if err != nil {
			return storeAnswer(err), err
		}
		res.Raft = map[bool]string{true: "removed", false: "not a server"}[removed]
	}
	if code, err := n.forceLeaveMember(mc, name, leaving, &res); err != nil {
		return failed(code, err), nil
	}
	n.log.Info("force-leave", "member", name, "raft", res.Raft, "members", res.Members, "client", client, "leaving", leaving)
	return adminAnswer{Status: http.StatusOK, Leave: &res}, nil
}

// forceLeaveMember does the gossip half of a force-leave and records it in
// res; it fails with 404 when name is neither a raft server nor a member.
func (n *Node) forceLeaveMember(mc *membership.Cluster, name string, leaving bool, res *LeaveResult) (int, error) {
	switch {
	case leaving:
		res.Members = "leaving" // the node leaves gossip itself as it stops
		return 0, nil
	case mc == nil:
	default:
		err := mc.ForceLeave(name)
		switch {
		case err == nil:
			res.Members = "left"
		case errors.Is(err, membership.ErrNoSuchMember):
			res.Members = "not a member"
		case errors.Is(err, membership.ErrMemberAlive):
			return http.StatusConflict, fmt.Errorf("%s came back: %w", name, err)
		default:
			return http.StatusInternalServerError, err
		}
	}
	if res.Raft != "removed" && res.Members != "left" {
		return http.StatusNotFound, fmt.Errorf("no member or raft server named %q", name)
	}
	return 0, nil
}

// gossipAgreeWait bounds a leader's wait for its view of a member that a
// follower saw dead to agree. It leaves RemoveServer's 5 s within the
// follower's forwardTimeout (10 s).
const gossipAgreeWait = 4 * time.Second

// stillAlive polls alive until it reports false or wait has passed, and
// returns its last answer.
func stillAlive(ctx context.Context, wait time.Duration, alive func() bool) bool {
	deadline := time.Now().Add(wait)
	for alive() {
		if !time.Now().Before(deadline) {
			return true
		}
		select {
		case <-ctx.Done():
			return true
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

func memberAlive(mc *membership.Cluster, name string) bool {
	for _, m := range mc.Members() {
		if m.Name == name {
			return m.State == membership.Alive || m.State == membership.Suspect
		}
	}
	return false
}
