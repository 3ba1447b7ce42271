// Package nodeflags reads the command line and environment that a
// deployment file (compose file, Kubernetes manifest) gives
// "pingora-node run", the way the binary reads them: every setting flag of
// config.Settings through the flag package, then config.Load, which
// validates the result. The deploy tests use it to check that what the
// files ask for is what the binary accepts. Test helper: import it only
// from _test.go files.
package nodeflags
