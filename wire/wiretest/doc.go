// Package wiretest is wire's in-memory twin and fault injector.
//
// Network is an in-memory network of named listeners joined by net.Pipe,
// with dial counting and peers that can be taken down (SetDown, as a
// crash). Faults is a decorator over a node's wire.Dialer (and its
// listeners, to name their addresses) that injects faults per direction of
// each link between named nodes: a partition, symmetric (Partition) or
// one-way (CutOneWay), that holds bytes as TCP does until Heal; an added
// delay; a fraction of wire frames lost whole (so the stream stays in
// step and calls time out); a fraction of dials refused; and resets. It
// works over a Network or real TCP, for wire and for other protocols that
// share a port (those are held and delayed, never dropped from). node's
// multi-node test harness builds on it.
//
// It imports wire and clock from the module; import it only from _test.go
// files. See wire's Example and faults_test.go for its use.
package wiretest
