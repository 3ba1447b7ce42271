package proxy

// vecWriter is a connection that writes several buffers in one call
// (writev(2)); see sockIO.
type vecWriter interface {
	writev(bufs [][]byte) (int64, error)
}
