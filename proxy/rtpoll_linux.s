// Empty: it lets rtpoll_linux.go declare the runtime's poller functions
// (go:linkname) without bodies.
