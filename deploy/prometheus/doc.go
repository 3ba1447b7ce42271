// Package prometheus holds no code: compose.yml and kubernetes.yml are
// Prometheus scrape configs for the clusters of deploy/docker and
// deploy/kubernetes, and prometheus_test.go checks that they find those
// nodes: the same DNS name, pod label, port and path the deployments use.
package prometheus
