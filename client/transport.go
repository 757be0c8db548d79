package client

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
)

// defaultTransport is the transport of clients made without
// [WithHTTPClient]: http.DefaultTransport's settings, with connections whose
// ReadFrom sends request bodies in writes of up to 1 MiB. net/http copies a
// request body onto its connection with io.Copy, 32 KiB at a time, a
// system call (and a wake-up of the server) each; for uploads
// ([Sandbox.WriteFile]) larger writes cost a fraction of the CPU. Bodies
// the kernel can send by itself (files, sockets: sendfile, splice) still
// go to the connection's own ReadFrom.
var defaultTransport = sync.OnceValue(func() http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var d net.Dialer
	dial := tr.DialContext
	if dial == nil {
		dial = d.DialContext
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, ok := c.(io.ReaderFrom); !ok {
			return c, nil
		}
		return bulkConn{c}, nil
	}
	return tr
})

const bulkCopyBuffer = 1 << 20

var bulkBuffers = sync.Pool{New: func() any { b := make([]byte, bulkCopyBuffer); return &b }}

// bulkConn copies request bodies through a large buffer; see
// defaultTransport.
type bulkConn struct{ net.Conn }

func (c bulkConn) ReadFrom(r io.Reader) (int64, error) {
	if kernelCopies(r) {
		return c.Conn.(io.ReaderFrom).ReadFrom(r)
	}
	bp := bulkBuffers.Get().(*[]byte)
	defer bulkBuffers.Put(bp)
	return io.CopyBuffer(writerOnly{c.Conn}, readerOnly{r}, *bp)
}

// kernelCopies reports whether r (possibly limited) is a file or socket,
// which a TCP connection's ReadFrom sends with sendfile or splice.
func kernelCopies(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	switch r.(type) {
	case *os.File, syscall.Conn:
		return true
	}
	return false
}

type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }
