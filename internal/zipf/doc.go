// Package zipf draws deterministic zipf-distributed ranks for tests and
// benchmarks of the cache and the rate estimator. Unlike math/rand/v2's
// Zipf, which needs s > 1, it accepts any exponent s > 0 (web traffic is
// often near s = 0.9 to 1.0) by inverting the cumulative distribution.
//
// It imports only the standard library. See Example.
package zipf
