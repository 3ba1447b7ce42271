// Package docker holds no code: the files in this directory run a
// pingora-node cluster with docker-compose (see README.md here), and
// compose_test.go checks that the compose file gives every node what the
// binary accepts and what the cluster needs: the same flags for every
// node, join through the service's DNS name, ports published on loopback
// only, a seed config that validates. smoke.sh runs it for real.
package docker
