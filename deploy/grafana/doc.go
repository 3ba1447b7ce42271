// Package grafana holds no code: pingora-node.json is a Grafana dashboard
// for the metrics a node exports (see README.md here), and its tests run a
// real pingora-node, send it a little of every kind of traffic, and check
// that every metric, label and label value the dashboard queries exists in
// the node's /metrics.
package grafana
