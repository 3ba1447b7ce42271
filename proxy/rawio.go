package proxy

// vecWriter is a connection that writes several buffers in one call
// (writev(2)); see sockIO.
type vecWriter interface {
	writev(bufs [][]byte) (int64, error)
}

// writeHolder is a connection whose next write can wait for its next read
// and go out from inside it (sockIO.holdNextWrite).
type writeHolder interface {
	holdNextWrite()
}
