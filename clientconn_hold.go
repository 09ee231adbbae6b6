package proxywatch

import (
	"net"
	"sync"
	"sync/atomic"
)

// writeHold sends the head of a small decrypted (MITM) response together
// with its body, in one system call and one TCP segment instead of two.
//
// Why: goproxy writes a MITM response with http.Response.Write through a
// writer that sends the head as soon as it is complete, then the body: two
// TLS records, two writes to the client. For a small response the second
// write comes at once, so countingRT arms the hold when the upstream
// answered with a small body of known length; the client connection then
// keeps the next write (the head's record) and sends it with the one after
// (the body's), or before anything else happens on the connection: a read
// (goproxy wants the next request), the end of the request (requestDone) or
// a close. A response handler that replaced the body with a slow one delays
// the head until that body's first bytes.
//
// A chunked response is worse: goproxy writes each chunk's size line, data
// and end as three TLS records, and the last chunk as two more, each a write
// to the client. While goproxy copies such a body (streamBody), what it
// writes waits for its next read of the upstream body, or the end of the
// response: one write per chunk read, and a small response in two (the head,
// then the rest). Nothing waits for the upstream: the held bytes go before
// each read, which may wait.
type writeHold struct {
	state atomic.Int32 // holdNone, holdArmed, holdHeld or holdStream

	mu  sync.Mutex // guards buf and err, and orders the writes of held bytes
	buf *[]byte    // the held writes, in a buffer of holdBufs while held
	err error      // a write of held bytes failed (holdStream): later writes fail
}

// holdBufs keeps the buffers of held writes between responses, so that an
// idle MITM connection holds none.
var holdBufs = sync.Pool{New: func() any { return new([]byte) }}

// The states of a writeHold.
const (
	holdNone   = iota
	holdArmed  // the next write is held
	holdHeld   // buf holds a write, sent with the next one
	holdStream // writes are held until the next read of the upstream body
)

// holdMax is the largest response body whose head waits for it.
const holdMax = 16 << 10

// holdNextWrite arms the hold on c: its next write waits for the one after.
// Only the goroutine that writes the response may call it.
func (c *clientConn) holdNextWrite() {
	a := c.ahead.Load()
	if a == nil {
		c.ahead.CompareAndSwap(nil, new(readAhead))
		a = c.ahead.Load()
	}
	a.hold.state.CompareAndSwap(holdNone, holdArmed)
}

// writeHeld is Write while a hold is armed or holds a write.
func (c *clientConn) writeHeld(h *writeHold, b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.state.Load() {
	case holdArmed:
		h.buf = holdBufs.Get().(*[]byte)
		*h.buf = append((*h.buf)[:0], b...)
		h.state.Store(holdHeld)
		return len(b), nil
	case holdHeld:
		// One write of both (a copy of a small record costs far less than
		// a system call, and works on any connection, writev or not).
		h.state.Store(holdNone)
		held := len(*h.buf)
		*h.buf = append(*h.buf, b...)
		n, err := c.writeWire(*h.buf)
		h.release()
		return min(max(n-held, 0), len(b)), err
	case holdStream:
		if h.err != nil {
			return 0, h.err
		}
		if len(b) >= streamDirect {
			// A large record (bulk data) is not copied: what is held goes
			// with it in one writev.
			return c.writeWithHeld(h, b)
		}
		if h.buf == nil {
			h.buf = holdBufs.Get().(*[]byte)
			*h.buf = (*h.buf)[:0]
		}
		*h.buf = append(*h.buf, b...)
		if len(*h.buf) >= holdMax {
			_, err := c.writeWire(*h.buf)
			h.release()
			if err != nil {
				h.err = err
				return 0, err
			}
		}
		return len(b), nil
	}
	return c.writeWire(b)
}

// streamDirect is the size from which a write in holdStream is not copied
// into the hold's buffer.
const streamDirect = 4 << 10

// writeWithHeld writes what h holds and b with one writev (on a TCP
// connection), returning what of b was written. h.mu must be held.
func (c *clientConn) writeWithHeld(h *writeHold, b []byte) (int, error) {
	if h.buf == nil {
		return c.writeWire(b)
	}
	held := len(*h.buf)
	bufs := net.Buffers{*h.buf, b}
	n64, err := bufs.WriteTo(c.Conn)
	n := int(n64)
	c.account(n, err)
	if err != nil {
		h.err = err
	}
	h.release()
	return min(max(n-held, 0), len(b)), err
}

// holdStream sends what is held and holds the writes that follow until the
// next call, or until the hold ends (flushHeld). streamBody calls it before
// each read of the upstream body.
func (c *clientConn) holdStream() {
	a := c.ahead.Load()
	if a == nil {
		c.ahead.CompareAndSwap(nil, new(readAhead))
		a = c.ahead.Load()
	}
	h := &a.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.buf != nil && h.err == nil {
		if _, err := c.writeWire(*h.buf); err != nil {
			h.err = err // the next write says so
		}
	}
	if h.buf != nil {
		h.release()
	}
	h.state.Store(holdStream)
}

// The end of the body (the last chunk, then trailers) is written after
// goproxy closes it, and goes with the first of what follows: goproxy reading
// the connection for the next request, the next request's onRequest (when it
// was already read), requestDone or a close.

// release returns the buffer of a held write to the pool. h.mu must be held.
func (h *writeHold) release() {
	if cap(*h.buf) <= 2*holdMax {
		holdBufs.Put(h.buf)
	}
	h.buf = nil
}

// flushHeld sends a held write, if there is one, and disarms the hold.
func (c *clientConn) flushHeld() {
	a := c.ahead.Load()
	if a == nil || a.hold.state.Load() == holdNone {
		return
	}
	h := &a.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	h.state.Store(holdNone)
	if h.buf != nil {
		if h.err == nil {
			_, _ = c.writeWire(*h.buf)
		}
		h.release()
	}
	h.err = nil
}
