// Package wireprom exports wire's counters to Prometheus: a Collector that
// reads Server, Client and Mux stats snapshots at scrape time, so wire
// itself never imports Prometheus and keeps no metric state of its own
// beyond atomic counters.
//
// It imports wire and Prometheus only; node registers one Collector on its
// own registry (never the default one). See Example.
package wireprom
