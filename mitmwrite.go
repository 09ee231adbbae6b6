package proxywatch

import (
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
type writeHold struct {
	state atomic.Int32 // holdNone, holdArmed or holdHeld

	mu  sync.Mutex // guards buf, and orders the writes of a held head
	buf *[]byte    // the held write, in a buffer of holdBufs while held
}

// holdBufs keeps the buffers of held writes between responses, so that an
// idle MITM connection holds none.
var holdBufs = sync.Pool{New: func() any { return new([]byte) }}

// The states of a writeHold.
const (
	holdNone  = iota
	holdArmed // the next write is held
	holdHeld  // buf holds a write, sent with the next one
)

// holdMax is the largest response body whose head waits for it.
const holdMax = 16 << 10

// holdNextWrite arms the hold on c: its next write waits for the one after.
// Only the goroutine that writes the response may call it.
func (c *trackedConn) holdNextWrite() {
	a := c.ahead.Load()
	if a == nil {
		c.ahead.CompareAndSwap(nil, new(readAhead))
		a = c.ahead.Load()
	}
	a.hold.state.CompareAndSwap(holdNone, holdArmed)
}

// writeHeld is Write while a hold is armed or holds a write.
func (c *trackedConn) writeHeld(h *writeHold, b []byte) (int, error) {
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
	}
	return c.writeWire(b)
}

// release returns the buffer of a held write to the pool. h.mu must be held.
func (h *writeHold) release() {
	if cap(*h.buf) <= 2*holdMax {
		holdBufs.Put(h.buf)
	}
	h.buf = nil
}

// flushHeld sends a held write, if there is one, and disarms the hold.
func (c *trackedConn) flushHeld() {
	a := c.ahead.Load()
	if a == nil || a.hold.state.Load() == holdNone {
		return
	}
	h := &a.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state.Swap(holdNone) == holdHeld {
		_, _ = c.writeWire(*h.buf)
		h.release()
	}
}

// writeWire writes b to the connection and accounts for it as Write does.
func (c *trackedConn) writeWire(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.wire.Add(uint64(n))
	}
	if err != nil {
		c.noteErr(err)
	}
	return n, err
}
