// Package clock supplies time to the rest of pingora-go so that loops and
// deadlines can be driven by a fake clock in tests.
//
// It imports nothing from the module. Pure logic elsewhere takes a
// time.Time argument; long-running loops take a Clock field that defaults to
// Real. See ExampleFake.
package clock
