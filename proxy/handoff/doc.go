// Package handoff passes listening sockets from a running process to its
// successor over a Unix domain socket (SCM_RIGHTS), so a new binary or a
// new configuration takes over without a refused connection: the kernel
// socket, and its accept queue, never closes.
//
// The running process offers its listeners with Listen and Offer.Accept;
// the successor asks for them with Request, takes the ones its own
// configuration names (Inherited.Take), and reports back in two steps:
// Release (it needs the state the old process holds, such as a data
// directory lock) and Serving (it accepts connections; the old process may
// drain and exit). If the successor fails or dies before Serving, the old
// process learns why and keeps serving.
//
// The hand-off socket itself passes with the listeners: the successor
// offers the same socket at the same path (Inherited.TakeOffer), so the
// path never changes hands, an old process that drains cannot remove its
// successor's socket file, and a successor that connects while another
// hand-off runs waits in the socket's queue for the process that serves
// next. Only the process that owns the socket removes its file at Close.
//
// It imports nothing from this module. See Example_handoff.
package handoff
