package proxywatch

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn wraps every client connection the proxy accepts. It gives the
// Proxy a handle that really closes the connection (also after goproxy hijacked
// it for a tunnel, MITM or WebSocket), records wire activity for the idle
// timeout, and notes how the client side ended. Its Read and Write do one
// atomic add and nothing else.
//
// Every open client connection holds one, so it holds the little that every
// connection needs: the CONNECT note and the request context value live
// inside it, and the read-ahead state that only MITM requests use is
// allocated by the first of them.
type clientConn struct {
	net.Conn
	p      *Proxy
	remote string

	wire     atomic.Uint64            // bytes read plus written, for idle detection only
	failed   atomic.Pointer[errorBox] // first read or write error other than EOF
	eof      atomic.Uint64            // endStamp of the client's EOF; 0 while it sends
	hijacked atomic.Bool
	busy     atomic.Int32 // live plain requests on it: the idle timeout applies

	closeOnce sync.Once // after the two above: no padding between them
	closeErr  *errorBox // what closing returned, if it failed

	// The CONNECT note, set by the CONNECT hook before goproxy decides what
	// to do with the tunnel: its session, and when it came (monoNanos).
	// connectAt is written before connectID is stored, and read only after a
	// load of connectID found it set.
	connectID atomic.Int64
	connectAt int64

	pace     atomic.Int64              // the last pace look (monoNanos) << 1, | 1 while the unsent limit is lifted
	ahead    atomic.Pointer[readAhead] // MITM requests only: notices the client leaving
	deadline atomic.Int64              // the owner's read deadline (deadlineNanos), restored after a read ahead

	ctx connCtx // what connContext gives net/http

	// Owned by the sampler goroutine.
	lastWire   uint64
	lastChange int64 // monoNanos of when lastWire last changed; 0 before the first look
}

// clientTCPConn is a clientConn over a connection that can half-close.
// goproxy only keeps a tunnel's half-close semantics when both sides have
// CloseWrite and CloseRead, so the wrapper must keep them.
type clientTCPConn struct {
	*clientConn
}

type halfCloser interface {
	CloseWrite() error
	CloseRead() error
}

// Interface guards.
var (
	_ halfCloser = (*clientTCPConn)(nil)
	_ halfCloser = (*net.TCPConn)(nil)
)

// CloseWrite and CloseRead are those of the wrapped connection, which Accept
// checked has them.
func (c *clientTCPConn) CloseWrite() error { return c.Conn.(halfCloser).CloseWrite() }
func (c *clientTCPConn) CloseRead() error  { return c.Conn.(halfCloser).CloseRead() }

// errorBox holds an error, with the endStamp of when it was noted.
type errorBox struct {
	err error
	at  uint64
}

// boxErr boxes err, stamped now.
func boxErr(err error) *errorBox { return &errorBox{err: err, at: endStamp()} }

// endOrder orders the ends and failures of connections' sides, so that a
// tunnel's end reason can name the side that ended first.
var endOrder atomic.Uint64

// endStamp returns a stamp greater than every stamp before it. It is taken
// only when a side ends or fails, once or twice per connection.
func endStamp() uint64 { return endOrder.Add(1) }

// noteConnect notes a CONNECT of session id, made at start. A client
// connection carries at most one CONNECT (goproxy hijacks it), and the first
// note is kept.
func (c *clientConn) noteConnect(id ConnID, start time.Time) {
	if c.connectID.Load() == 0 {
		c.connectAt = monoNanos(start)
		c.connectID.Store(int64(id))
	}
}

// connectNote returns the session of the connection's CONNECT and when it
// came; ok is false when it carried none (yet).
func (c *clientConn) connectNote() (id ConnID, start time.Time, ok bool) {
	if n := c.connectID.Load(); n != 0 {
		return ConnID(n), monoTime(c.connectAt), true
	}
	return 0, time.Time{}, false
}

// monoBase and monoNanos give times that only the sampler compares as
// integers: nanoseconds on the monotonic clock since the package started.
var monoBase = time.Now()

func monoNanos(t time.Time) int64 { return max(int64(t.Sub(monoBase)), 1) }

// monoTime is the time monoNanos encoded as n. Its wall clock is monoBase's
// plus the monotonic time since, which is what durations use anyway.
func monoTime(n int64) time.Time { return monoBase.Add(time.Duration(n)) }

// deadlineNanos encodes a deadline as an integer: 0 for none.
func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 1)
}

func deadlineTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (c *clientConn) Read(b []byte) (int, error) {
	if a := c.ahead.Load(); a != nil {
		if a.hold.state.Load() != holdNone {
			c.flushHeld() // the reader may wait for the client, which waits for it
		}
		if a.pending.Load() {
			if n, err, ok := c.takeAhead(a, b); ok {
				return n, err
			}
		}
	}
	n, err := c.Conn.Read(b)
	c.account(n, err)
	return n, err
}

func (c *clientConn) Write(b []byte) (int, error) {
	if a := c.ahead.Load(); a != nil && a.hold.state.Load() != holdNone {
		return c.writeHeld(&a.hold, b)
	}
	return c.writeWire(b)
}

// writeWire writes b straight to the client connection, past any hold.
func (c *clientConn) writeWire(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		if w := c.wire.Add(uint64(n)); (w-uint64(n))/paceStep != w/paceStep {
			c.lookAtPace()
		}
	}
	if err != nil {
		c.noteErr(err)
	}
	return n, err
}

// paceStep is how many bytes the connection moves between two looks at its
// pace. A client counts as fast when a step takes at most fastStep (20
// MiB/s) and as slow again when one takes more than slowStep (5 MiB/s): a
// fast reader that the machine's load delays for a moment keeps its lift.
const (
	paceStep = 1 << 20
	fastStep = int64(50 * time.Millisecond)
	slowStep = int64(200 * time.Millisecond)
)

// lookAtPace lifts the socket's unsent limit (socket.go) while the client
// takes its bytes fast, and sets it again when it slows down. The limit
// keeps a slow reader's count close to what it read; a fast reader gains
// nothing from it (a lead of a few MiB is milliseconds of its transfer) and
// would pay a wake-up of the writer for every few records it takes. It runs
// once per paceStep written, so a transfer pays one clock read per MiB.
func (c *clientConn) lookAtPace() {
	now := monoNanos(time.Now())
	last := c.pace.Load()
	lifted := last&1 == 1
	fast := lifted
	switch step := now - last>>1; {
	case last == 0:
	case step <= fastStep:
		fast = true
	case step > slowStep:
		fast = false
	}
	next := now << 1
	if fast {
		next |= 1
	}
	c.pace.Store(next)
	if fast != lifted {
		tuneUnsent(c.Conn, fast)
	}
}

// account counts n bytes moved on the client's wire and notes err, for
// every read and write of the connection.
func (c *clientConn) account(n int, err error) {
	if n > 0 {
		c.wire.Add(uint64(n))
	}
	if err != nil {
		c.noteErr(err)
	}
}

func (c *clientConn) noteErr(err error) {
	if isEOF(err) {
		if c.eof.Load() == 0 { // reads after the end say EOF again: stamp once
			c.eof.CompareAndSwap(0, endStamp())
		}
		return
	}
	if errors.Is(err, net.ErrClosed) {
		// Closed on this side (by goproxy or the Proxy): whatever ended the
		// connection was noted before, or was not the client's doing.
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// net/http aborts its background read with a past deadline before a
		// hijack; deadlines are their owner's business, not a client failure.
		return
	}
	c.failed.CompareAndSwap(nil, boxErr(err))
}

// gone reports whether the client side has ended: it closed, reset or failed.
func (c *clientConn) gone() bool {
	return c != nil && (c.eof.Load() != 0 || c.failed.Load() != nil)
}

// failure returns the first I/O error on the client side other than EOF.
func (c *clientConn) failure() error {
	if c == nil {
		return nil
	}
	if b := c.failed.Load(); b != nil {
		return b.err
	}
	return nil
}

// SetReadDeadline sets the read deadline, and remembers it for when a read
// ahead is stopped.
func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.deadline.Store(deadlineNanos(t))
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines, and remembers the read one for when a
// read ahead is stopped. Held writes go first (SetWriteDeadline).
func (c *clientConn) SetDeadline(t time.Time) error {
	c.flushHeld()
	c.deadline.Store(deadlineNanos(t))
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline sets the write deadline once held writes (writeHold) went
// under the one before: for the writer they were written already. (tls.Conn
// sets a deadline in the past after its close_notify alert, which would
// otherwise fail the held end of a response.)
func (c *clientConn) SetWriteDeadline(t time.Time) error {
	c.flushHeld()
	return c.Conn.SetWriteDeadline(t)
}

// Close closes the connection once and forgets it.
func (c *clientConn) Close() error {
	c.closeOnce.Do(func() {
		c.p.clients.remove(c)
		c.flushHeld()
		if err := c.Conn.Close(); err != nil {
			c.closeErr = boxErr(err)
		}
		if a := c.ahead.Load(); a != nil {
			a.mu.Lock()
			a.cancelDue() // a running one ends with the connection
			a.mu.Unlock()
		}
	})
	if c.closeErr != nil {
		return c.closeErr.err
	}
	return nil
}

// NetConn returns the wrapped connection.
func (c *clientConn) NetConn() net.Conn { return c.Conn }

func (c *clientConn) base() *clientConn { return c }
