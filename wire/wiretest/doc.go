// Package wiretest is wire's in-memory twin: a Network of named listeners
// joined by net.Pipe, with dial counting and peers that can be taken down.
//
// It imports only wire from the module; import it only from _test.go files.
// See wire's Example for its use.
package wiretest
