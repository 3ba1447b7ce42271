// Package kubernetes holds no code: the manifests in this directory run
// pingora-node as a StatefulSet, and manifests_test.go decodes them
// strictly into the Kubernetes API types and checks what must hold
// (odd replicas, a disruption budget that keeps raft quorum, probes on
// the admin API's real paths, flags the binary accepts). See README.md.
//
// It exists apart so that the Kubernetes API modules are test
// dependencies only: nothing in the pingora-node binary imports them.
package kubernetes
