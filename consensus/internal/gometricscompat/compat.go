// Package metrics (import path github.com/hashicorp/go-metrics/compat) is a local stand-in for github.com/hashicorp/go-metrics/compat
// (dropped from go-metrics v0.7.0, still imported by raft-boltdb/v2 v2.3.1). It
// forwards the few global metric calls raft-boltdb makes to
// github.com/hashicorp/go-metrics. See consensus/doc.go.
package metrics

import (
	"time"

	gometrics "github.com/hashicorp/go-metrics"
)

// Label is the go-metrics label type.
type Label = gometrics.Label

// SetGauge forwards to gometrics.SetGauge.
func SetGauge(key []string, val float32) { gometrics.SetGauge(key, val) }

// SetGaugeWithLabels forwards to gometrics.SetGaugeWithLabels.
func SetGaugeWithLabels(key []string, val float32, labels []Label) {
	gometrics.SetGaugeWithLabels(key, val, labels)
}

// EmitKey forwards to gometrics.EmitKey.
func EmitKey(key []string, val float32) { gometrics.EmitKey(key, val) }

// IncrCounter forwards to gometrics.IncrCounter.
func IncrCounter(key []string, val float32) { gometrics.IncrCounter(key, val) }

// IncrCounterWithLabels forwards to gometrics.IncrCounterWithLabels.
func IncrCounterWithLabels(key []string, val float32, labels []Label) {
	gometrics.IncrCounterWithLabels(key, val, labels)
}

// AddSample forwards to gometrics.AddSample.
func AddSample(key []string, val float32) { gometrics.AddSample(key, val) }

// AddSampleWithLabels forwards to gometrics.AddSampleWithLabels.
func AddSampleWithLabels(key []string, val float32, labels []Label) {
	gometrics.AddSampleWithLabels(key, val, labels)
}

// MeasureSince forwards to gometrics.MeasureSince.
func MeasureSince(key []string, start time.Time) { gometrics.MeasureSince(key, start) }

// MeasureSinceWithLabels forwards to gometrics.MeasureSinceWithLabels.
func MeasureSinceWithLabels(key []string, start time.Time, labels []Label) {
	gometrics.MeasureSinceWithLabels(key, start, labels)
}
