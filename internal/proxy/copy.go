package proxy

import (
	"io"
	"net"
	"sync"
)

// bulkCopyBuffer is the buffer request bodies are copied to the agent
// through. net/http copies a request body onto its connection with
// io.Copy, 32 KiB at a time: for a large upload (the /files route) that
// is a write, and a wake-up of the agent, per 32 KiB. Up to 1 MiB per
// write cuts the CPU the server spends per byte uploaded.
const bulkCopyBuffer = 1 << 20

// newBulkBuffers returns the pool of bulkCopyBuffer buffers bulkConns copy
// through (Proxy.bulk).
func newBulkBuffers() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, bulkCopyBuffer); return &b }}
}

// bulkConn is a connection to an agent whose ReadFrom (which net/http's
// transport uses to send a request body) copies through a large buffer of
// bufs.
type bulkConn struct {
	net.Conn
	bufs *sync.Pool
}

// ReadFrom copies r to the connection, up to bulkCopyBuffer bytes a write.
func (c bulkConn) ReadFrom(r io.Reader) (int64, error) {
	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)
	return io.CopyBuffer(writerOnly{c.Conn}, readerOnly{r}, *bp)
}

// writerOnly and readerOnly hide ReadFrom and WriteTo, so that
// io.CopyBuffer uses the buffer it is given (and does not come back here).
type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }
