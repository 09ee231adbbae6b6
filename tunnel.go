package proxywatch

import (
	"cmp"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// tunnelConn is a CONNECT tunnel's upstream connection: what is written to it
// came from the client (up), what is read from it goes to the client (down).
// Its first Close ends the tunnel; goproxy closes it after both directions
// finished (or one failed), so its counts are final then.
type tunnelConn struct {
	net.Conn
	e    *entry
	p    *Proxy
	eof  atomic.Uint64 // endStamp of the upstream's EOF; 0 while it sends
	once sync.Once
	err  *errorBox
}

// tunnelTCPConn keeps CloseWrite and CloseRead, without which goproxy drops
// the tunnel's half-close semantics.
type tunnelTCPConn struct {
	*tunnelConn
}

var _ halfCloser = (*tunnelTCPConn)(nil)

// CloseWrite and CloseRead are those of the wrapped connection, which the
// dial checked has them.
func (c *tunnelTCPConn) CloseWrite() error { return c.Conn.(halfCloser).CloseWrite() }

func (c *tunnelTCPConn) CloseRead() error { return c.Conn.(halfCloser).CloseRead() }

func (c *tunnelConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.e.down.Add(uint64(n))
	}
	c.noteRead(err)
	return n, err
}

// noteRead notes how a read from the upstream ended, if it did.
func (c *tunnelConn) noteRead(err error) {
	switch {
	case err == nil:
	case isEOF(err):
		if c.eof.Load() == 0 { // reads after the end say EOF again: stamp once
			c.eof.CompareAndSwap(0, endStamp())
		}
	default:
		c.e.bodyErr.CompareAndSwap(nil, boxErr(err))
	}
}

func (c *tunnelConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.e.up.Add(uint64(n))
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		c.e.bodyErr.CompareAndSwap(nil, boxErr(err))
	}
	return n, err
}

func (c *tunnelConn) Close() error {
	c.once.Do(func() {
		if err := c.Conn.Close(); err != nil {
			c.err = boxErr(err)
		}
		c.p.tunnelDone(c)
	})
	if c.err != nil {
		return c.err.err
	}
	return nil
}

// NetConn returns the wrapped connection.
func (c *tunnelConn) NetConn() net.Conn { return c.Conn }

func isEOF(err error) bool { return err == io.EOF || errors.Is(err, io.EOF) }

// copyBufs are the buffers of copyPooled.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyPooled is io.Copy with a pooled buffer. net/http hands every plain
// response body to the client connection's ReadFrom, where a bare
// *net.TCPConn would allocate (and clear) a fresh 32 KiB buffer for each
// response.
func copyPooled(dst io.Writer, src io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(dst, src, *buf)
}

// writerOnly hides a ReadFrom method so io.Copy falls back to Write.
type writerOnly struct{ io.Writer }

// ReadFrom copies the upstream side of a tunnel to the client. It splices
// when r is a tunnel's upstream connection.
func (c *clientTCPConn) ReadFrom(r io.Reader) (int64, error) {
	dst, ok1 := c.Conn.(*net.TCPConn)
	t, ok2 := r.(*tunnelTCPConn)
	if ok1 && ok2 {
		if src, ok := t.Conn.(*net.TCPConn); ok {
			n, rerr, werr := spliceCopy(dst, src, func(n int64) {
				t.e.down.Add(uint64(n))
				c.wire.Add(uint64(n))
			})
			if werr != nil {
				c.noteErr(werr) // writing to the client failed: it went away
			} else {
				t.noteRead(cmp.Or(rerr, io.EOF))
			}
			return n, cmp.Or(werr, rerr)
		}
	}
	return copyPooled(writerOnly{c}, r)
}

// ReadFrom copies the client side of a tunnel to the upstream. It splices
// when r is the tunnel's client connection.
func (c *tunnelTCPConn) ReadFrom(r io.Reader) (int64, error) {
	dst, ok1 := c.Conn.(*net.TCPConn)
	t, ok2 := r.(*clientTCPConn)
	if ok1 && ok2 {
		if src, ok := t.Conn.(*net.TCPConn); ok {
			n, rerr, werr := spliceCopy(dst, src, func(n int64) {
				c.e.up.Add(uint64(n))
				t.wire.Add(uint64(n))
			})
			if werr != nil {
				c.e.bodyErr.CompareAndSwap(nil, boxErr(werr)) // writing upstream failed
			} else {
				t.noteErr(cmp.Or(rerr, io.EOF))
			}
			return n, cmp.Or(werr, rerr)
		}
	}
	return copyPooled(writerOnly{c}, r)
}

// tunnelDone ends a tunnel's connection when goproxy closed its upstream side.
// A tunnel only sees bytes, so its reason is the side that failed first. A
// side's failure after its own clean end (EOF) does not count: a peer that
// sent its end and then refuses a write has closed, as its end announced.
// With no failure that counts the tunnel completed.
func (p *Proxy) tunnelDone(c *tunnelConn) {
	e := c.e
	up := countedFault(e.bodyErr.Load(), c.eof.Load())
	var client *errorBox
	if e.client != nil {
		client = countedFault(e.client.failed.Load(), e.client.eof.Load())
	}
	switch {
	case up != nil && (client == nil || up.at < client.at):
		p.end(e, EndUpstreamError, up.err)
	case client != nil:
		p.end(e, EndClientClosed, client.err)
	default:
		p.end(e, EndCompleted, nil)
	}
}

// countedFault returns a side's failure f unless the side had ended cleanly
// (at its endStamp eof) before it.
func countedFault(f *errorBox, eof uint64) *errorBox {
	if f == nil || (eof != 0 && eof < f.at) {
		return nil
	}
	return f
}
