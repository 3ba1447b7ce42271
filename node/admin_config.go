package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pingora-go/pingora-go/consensus"
	"github.com/pingora-go/pingora-go/node/config"
)

// errRaftClosed answers a consistent read or a write on a node that
// replicates its config while its raft is closed: during a hand-off to a
// successor, or a stop. Another node, or this one's successor, can answer.
const errRaftClosed = "raft is not running on this node (handing off or stopping): retry, or ask another node"

// maxConfigBody bounds a PUT /v1/config body.
const maxConfigBody = 1 << 20

// forwardedHeader names, on an admin answer, the follower that forwarded
// the request to the leader (forward.go).
const forwardedHeader = "X-Pingora-Forwarded-By"

// ConfigDoc is a cluster config version as the admin API shows it.
type ConfigDoc struct {
	Version int64     `json:"version"`
	Hash    string    `json:"hash"`
	Time    time.Time `json:"time,omitzero"`
	Node    string    `json:"node,omitempty"`
	Content string    `json:"content"`
	// Unchanged is set on a PUT answer when the document had the same
	// values as the current version, so no version was written; Message
	// says so.
	Unchanged bool   `json:"unchanged,omitempty"`
	Message   string `json:"message,omitempty"`
}

func docOf(d consensus.Doc) ConfigDoc {
	return ConfigDoc{Version: d.Version, Hash: config.Hash(d.Content), Time: d.Time, Node: d.Node, Content: string(d.Content)}
}

func (n *Node) registerConfigAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/config", n.getConfig)
	mux.HandleFunc("GET /v1/config/history", n.configHistory)
	mux.HandleFunc("PUT /v1/config", n.adminWrite(bodyLimit(maxConfigBody, n.putConfig)))
}

// getConfig answers the applied cluster config: a local (stale) read, or
// with ?consistent=true a linearizable one through the leader.
func (n *Node) getConfig(w http.ResponseWriter, r *http.Request) {
	st := n.Store()
	consistent, err := queryBool(r, "consistent")
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if st == nil && consistent && n.cfg.Replicated() {
		// Raft is closed here (a hand-off to a successor, or a stop)
		// while the admin API still answers: the applied config may be
		// behind the cluster's, so it is no consistent read (chaos/
		// findings.md: stale reads during a rolling upgrade).
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": errRaftClosed})
		return
	}
	if st == nil {
		a := n.applied.Load()
		if a == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no config applied"})
			return
		}
		writeJSON(w, http.StatusOK, ConfigDoc{Version: a.Version, Hash: a.Hash, Time: a.AppliedAt, Content: string(a.content)})
		return
	}
	if consistent {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		d, ok, err := st.GetConsistent(ctx, clusterDoc)
		if err != nil {
			if n.forwardToLeader(w, r, nil, err) {
				return
			}
			n.writeStoreError(w, err)
			return
		}
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no cluster config written yet"})
			return
		}
		writeJSON(w, http.StatusOK, docOf(d))
		return
	}
	d, ok := st.Get(clusterDoc)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no cluster config written yet"})
		return
	}
	writeJSON(w, http.StatusOK, docOf(d))
}

func (n *Node) configHistory(w http.ResponseWriter, r *http.Request) {
	st := n.Store()
	if st == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "config is not replicated on this node (no data_dir)"})
		return
	}
	var out []ConfigDoc
	for _, d := range st.History(clusterDoc) {
		out = append(out, docOf(d))
	}
	writeJSON(w, http.StatusOK, out)
}

// putConfig validates a new cluster config completely, then proposes it
// through the leader. If-Match: <version> makes it a compare-and-set. A
// document that routes nothing is refused unless ?allow_empty=true, and
// one with the same values as the current version writes nothing.
func (n *Node) putConfig(w http.ResponseWriter, r *http.Request) {
	st := n.Store()
	if st == nil && n.cfg.Replicated() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": errRaftClosed})
		return
	}
	if st == nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "config is not replicated on this node (no data_dir): edit cluster_config and send SIGHUP"})
		return
	}
	body, c, code, err := readConfigBody(r)
	if err != nil {
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	ifVersion, err := ifMatchVersion(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	ctx, span := n.tracing.startConfigWrite(ctx, r)
	d, unchanged, err := writeConfig(ctx, st, body, c, ifVersion)
	if err != nil {
		forwarded := n.forwardToLeader(w, withSpan(r, span), body, err)
		endConfigWrite(span, d, err, forwarded)
		if !forwarded {
			n.writeStoreError(w, err)
		}
		return
	}
	endConfigWrite(span, d, nil, false)
	writeJSON(w, http.StatusOK, n.writtenDoc(d, unchanged, r.RemoteAddr, ""))
}

// writtenDoc logs a config write (or a write of the same values) and
// returns its answer.
func (n *Node) writtenDoc(d consensus.Doc, unchanged bool, client, forwardedBy string) ConfigDoc {
	out := docOf(d)
	if unchanged {
		out.Unchanged = true
		out.Message = fmt.Sprintf("same values as version %d: no new version written", d.Version)
		n.log.Info("cluster config unchanged: no new version", "version", d.Version, "client", client, "forwarded_by", forwardedBy)
	} else {
		n.log.Info("cluster config written", "version", d.Version, "client", client, "forwarded_by", forwardedBy)
	}
	return out
}

// readConfigBody reads and checks a PUT /v1/config body: it parses and
// validates, routes something unless ?allow_empty=true, and builds (the
// dry run, checkCluster). It returns the status to answer with on error.
func readConfigBody(r *http.Request) ([]byte, *config.Cluster, int, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxConfigBody+1))
	if err != nil {
		return nil, nil, http.StatusBadRequest, fmt.Errorf("reading the body: %w", err)
	}
	if len(body) > maxConfigBody {
		return nil, nil, http.StatusRequestEntityTooLarge, fmt.Errorf("config over %d bytes", maxConfigBody)
	}
	allowEmpty, err := queryBool(r, "allow_empty")
	if err != nil {
		return nil, nil, http.StatusBadRequest, err
	}
	c, code, err := checkConfigBody(body, allowEmpty)
	return body, c, code, err
}

// queryBool reads the boolean query parameter name of an admin request:
// false when absent, else its value by strconv.ParseBool (true, false, 1,
// 0, t, f in any case). A value that is none of those, an empty one, a
// parameter given more than once (?allow_empty=true&allow_empty=false
// must not read as either, and a repeat that agrees is refused alike so
// the rule is simple) and a query that does not parse are errors, which
// the handlers answer with 400 before doing anything.
func queryBool(r *http.Request, name string) (bool, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return false, fmt.Errorf("malformed query string: %w", err)
	}
	vs, ok := q[name]
	switch {
	case !ok:
		return false, nil
	case len(vs) > 1:
		return false, fmt.Errorf("query parameter %s given %d times (%s): give it once, true or false", name, len(vs), strings.Join(vs, ", "))
	}
	b, err := strconv.ParseBool(vs[0])
	if err != nil {
		return false, fmt.Errorf("query parameter %s=%q: want true or false", name, vs[0])
	}
	return b, nil
}

// checkConfigBody parses and validates a config, refuses one that routes
// nothing unless allowEmpty, and builds it (the dry run, checkCluster). It
// returns the status to answer with on error. A leader runs it again on a
// write a follower sent on.
func checkConfigBody(body []byte, allowEmpty bool) (*config.Cluster, int, error) {
	c, err := config.ParseNewCluster("config", body)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	if why := c.RoutesNothing(); why != "" && !allowEmpty {
		if len(bytes.TrimSpace(body)) == 0 {
			why = "the request body is empty (a file that curl --data-binary @FILE could not read is sent as nothing)"
		}
		return nil, http.StatusBadRequest, fmt.Errorf("config refused: %s; nothing was written. Send ?allow_empty=true (pingora-node config apply or config rollback with --allow-empty) to write it anyway", why)
	}
	if err := checkCluster(c); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("config refused: it does not build: %w; nothing was written", err)
	}
	return c, 0, nil
}

// ifMatchVersion reads If-Match: -1 when absent.
func ifMatchVersion(r *http.Request) (int64, error) {
	m := strings.Trim(r.Header.Get("If-Match"), `"`)
	if m == "" {
		return -1, nil
	}
	v, err := strconv.ParseInt(m, 10, 64)
	if err != nil || v < 0 {
		return 0, errors.New("If-Match must be a config version number")
	}
	return v, nil
}

// writeConfig writes body as a new version on the leader, unless If-Match
// names another version than the current one (a *ConflictError), or body
// has the same values as the current version: then it returns the current
// version and true. Either way the raft log is untouched. The current version is read linearizably, so a
// deposed leader, or one that has not applied its predecessor's last
// writes yet, does not take an old version for the current one; a
// follower gets *NotLeaderError and forwards.
func writeConfig(ctx context.Context, st *consensus.Store, body []byte, c *config.Cluster, ifVersion int64) (consensus.Doc, bool, error) {
	cur, ok, err := st.GetCurrent(ctx, clusterDoc)
	if err != nil {
		return consensus.Doc{}, false, err
	}
	if ifVersion >= 0 && ifVersion != cur.Version {
		// Decided here, so a refused write leaves the log alone; the FSM
		// decides again in log order for writes that race this one.
		return consensus.Doc{}, false, &consensus.ConflictError{Name: clusterDoc, Want: ifVersion, Current: cur.Version}
	}
	if ok {
		if old, err := config.ParseCluster("current", cur.Content); err == nil && config.Same(old, c) {
			return cur, true, nil
		}
	}
	d, err := st.Put(ctx, clusterDoc, body, ifVersion)
	return d, false, err
}

func (n *Node) writeStoreError(w http.ResponseWriter, err error) { storeAnswer(err).write(w) }
