package proxywatch

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// trackedConn wraps every client connection the proxy accepts. It gives the
// Proxy a handle that really closes the connection (also after goproxy hijacked
// it for a tunnel, MITM or WebSocket), records wire activity for the idle
// timeout, and notes how the client side ended. Its Read and Write do one
// atomic add and nothing else.
//
// Every open client connection holds one, so it holds the little that every
// connection needs: the CONNECT note and the request context value live
// inside it, and the read-ahead state that only MITM requests use is
// allocated by the first of them.
type trackedConn struct {
	net.Conn
	p      *Proxy
	remote string

	wire     atomic.Uint64            // bytes read plus written, for idle detection only
	failed   atomic.Pointer[errorBox] // first read or write error other than EOF
	hijacked atomic.Bool
	busy     atomic.Int32 // live plain requests on it: the idle timeout applies
	eof      atomic.Bool  // the client finished sending (read EOF)

	closeOnce sync.Once // after the three above: no padding between them
	closeErr  *errorBox // what closing returned, if it failed

	// The CONNECT note, set by the CONNECT hook before goproxy decides what
	// to do with the tunnel: its session, and when it came. connectAt is
	// written before connectID is stored, and read only after a load of
	// connectID found it set.
	connectID atomic.Int64
	connectAt time.Time

	ahead    atomic.Pointer[readAhead] // MITM requests only: notices the client leaving
	deadline atomic.Int64              // the owner's read deadline (deadlineNanos), restored after a read ahead

	ctx connCtx // what connContext gives net/http

	// Owned by the sampler goroutine.
	lastWire   uint64
	lastChange int64 // monoNanos of when lastWire last changed; 0 before the first look
}

// trackedTCPConn is a trackedConn over a connection that can half-close.
// goproxy only keeps a tunnel's half-close semantics when both sides have
// CloseWrite and CloseRead, so the wrapper must keep them.
type trackedTCPConn struct {
	*trackedConn
}

type halfCloser interface {
	CloseWrite() error
	CloseRead() error
}

// Interface guards.
var (
	_ halfCloser = (*trackedTCPConn)(nil)
	_ halfCloser = (*net.TCPConn)(nil)
)

// CloseWrite and CloseRead are those of the wrapped connection, which Accept
// checked has them.
func (c *trackedTCPConn) CloseWrite() error { return c.Conn.(halfCloser).CloseWrite() }
func (c *trackedTCPConn) CloseRead() error  { return c.Conn.(halfCloser).CloseRead() }

type errorBox struct{ err error }

// noteConnect notes a CONNECT of session id, made at start. A client
// connection carries at most one CONNECT (goproxy hijacks it), and the first
// note is kept.
func (c *trackedConn) noteConnect(id ConnID, start time.Time) {
	if c.connectID.Load() == 0 {
		c.connectAt = start
		c.connectID.Store(int64(id))
	}
}

// connectNote returns the session of the connection's CONNECT and when it
// came; ok is false when it carried none (yet).
func (c *trackedConn) connectNote() (id ConnID, start time.Time, ok bool) {
	if n := c.connectID.Load(); n != 0 {
		return ConnID(n), c.connectAt, true
	}
	return 0, time.Time{}, false
}

// monoBase and monoNanos give times that only the sampler compares as
// integers: nanoseconds on the monotonic clock since the package started.
var monoBase = time.Now()

func monoNanos(t time.Time) int64 { return max(int64(t.Sub(monoBase)), 1) }

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

func (c *trackedConn) Read(b []byte) (int, error) {
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

func (c *trackedConn) Write(b []byte) (int, error) {
	if a := c.ahead.Load(); a != nil && a.hold.state.Load() != holdNone {
		return c.writeHeld(&a.hold, b)
	}
	return c.writeWire(b)
}

// writeWire writes b straight to the client connection, past any hold.
func (c *trackedConn) writeWire(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.account(n, err)
	return n, err
}

// account counts n bytes moved on the client's wire and notes err, for
// every read and write of the connection.
func (c *trackedConn) account(n int, err error) {
	if n > 0 {
		c.wire.Add(uint64(n))
	}
	if err != nil {
		c.noteErr(err)
	}
}

func (c *trackedConn) noteErr(err error) {
	if isEOF(err) {
		c.eof.Store(true)
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
	c.failed.CompareAndSwap(nil, &errorBox{err})
}

// gone reports whether the client side has ended: it closed, reset or failed.
func (c *trackedConn) gone() bool {
	return c != nil && (c.eof.Load() || c.failed.Load() != nil)
}

// failure returns the first I/O error on the client side other than EOF.
func (c *trackedConn) failure() error {
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
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.deadline.Store(deadlineNanos(t))
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines, and remembers the read one for when a
// read ahead is stopped. Held writes go first (SetWriteDeadline).
func (c *trackedConn) SetDeadline(t time.Time) error {
	c.flushHeld()
	c.deadline.Store(deadlineNanos(t))
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline sets the write deadline once held writes (writeHold) went
// under the one before: for the writer they were written already. (tls.Conn
// sets a deadline in the past after its close_notify alert, which would
// otherwise fail the held end of a response.)
func (c *trackedConn) SetWriteDeadline(t time.Time) error {
	c.flushHeld()
	return c.Conn.SetWriteDeadline(t)
}

// readAhead reads a MITM client connection while nobody else does, so that
// the Proxy notices the client going away while its request waits for the
// upstream. net/http does this for plain requests (its background read
// cancels the request of a client that left), but goproxy reads a MITM'd
// connection only when it wants the next request: without this, a client
// that gave up on a stalled upstream would keep its request, and the upstream
// connection, until the idle timeout. What is read ahead (a pipelined
// request, a TLS alert) is handed to the next Read, which first stops the
// read ahead with a past deadline, as net/http stops its own. It also holds
// the writeHold of the connection's MITM responses.
type readAhead struct {
	pending atomic.Bool // a read ahead is due or runs, or left bytes or an error: Read must look
	hold    writeHold   // the head of a small response waits for its body (mitmwrite.go)

	mu      sync.Mutex
	due     func()      // set while a read ahead is due: what it calls if the client is gone
	timer   *time.Timer // starts a due read ahead (startAhead); one per connection
	running bool
	done    chan struct{} // closed when the running read ahead returned
	buf     []byte        // read ahead, not handed over yet
	err     error         // what ended the read ahead, handed over after buf
}

// maxReadAhead bounds what a read ahead keeps: a client pipelining requests
// is then held back by TCP flow control, as it would be without it.
const maxReadAhead = 64 << 10

// aLongTimeAgo is a deadline in the past: it stops a pending read at once.
var aLongTimeAgo = time.Unix(1, 0)

// readAheadAfter is how long a request waits for its upstream before its
// client connection is read ahead. Most upstreams answer sooner, and such a
// request then costs no goroutine, no buffer and no system call to watch its
// client (started for every request, the read ahead was a goroutine, a read
// that found nothing and a wake-up to stop it); a client that leaves a slow
// upstream is noticed this much later, which only matters to a slow upstream.
const readAheadAfter = 50 * time.Millisecond

// watchGone makes a read ahead due in readAheadAfter, unless one is due or
// runs or the client already ended. gone is called if the read ahead finds
// the client gone (EOF or an error). The caller must know that nobody reads
// the connection until the next Read of c, which cancels the read ahead, or
// stops it if it started.
func (c *trackedConn) watchGone(gone func()) {
	a := c.ahead.Load()
	if a == nil {
		c.ahead.CompareAndSwap(nil, new(readAhead))
		a = c.ahead.Load()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running || a.due != nil || a.err != nil || len(a.buf) >= maxReadAhead {
		return
	}
	a.due = gone
	a.pending.Store(true)
	if a.timer == nil {
		a.timer = time.AfterFunc(readAheadAfter, func() { c.startAhead(a) })
	} else {
		a.timer.Reset(readAheadAfter)
	}
}

// startAhead runs the due read ahead, on the timer's goroutine. A timer that
// fired as the read ahead was taken back finds none due, or one due for the
// next request, which it may start early: while one is due, nobody reads.
func (c *trackedConn) startAhead(a *readAhead) {
	a.mu.Lock()
	gone := a.due
	if gone == nil || a.running {
		a.mu.Unlock()
		return
	}
	a.due = nil
	a.running = true
	a.done = make(chan struct{})
	done := a.done
	a.mu.Unlock()
	c.readAheadLoop(a, done, gone)
}

// cancelDue takes back a read ahead that is due and has not started. a.mu
// must be held.
func (a *readAhead) cancelDue() {
	if a.due != nil {
		a.due = nil
		a.timer.Stop()
	}
}

func (c *trackedConn) readAheadLoop(a *readAhead, done chan struct{}, gone func()) {
	defer close(done)
	tmp := make([]byte, 1024)
	for {
		n, err := c.Conn.Read(tmp)
		stopped := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed)
		a.mu.Lock()
		if n > 0 {
			a.buf = append(a.buf, tmp[:n]...)
			c.wire.Add(uint64(n))
		}
		if err != nil && !stopped {
			a.err = err
		}
		end := err != nil || len(a.buf) >= maxReadAhead
		if end {
			a.running = false
		}
		a.mu.Unlock()
		if err != nil && !stopped {
			c.noteErr(err)
			gone()
		}
		if end {
			return
		}
	}
}

// takeAhead stops the read ahead if one runs and hands over what it read;
// ok is false when there is nothing to hand over, and the caller reads the
// connection itself.
func (c *trackedConn) takeAhead(a *readAhead, b []byte) (n int, err error, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancelDue()
	for a.running {
		_ = c.Conn.SetReadDeadline(aLongTimeAgo)
		done := a.done
		a.mu.Unlock()
		<-done
		a.mu.Lock()
		_ = c.Conn.SetReadDeadline(deadlineTime(c.deadline.Load()))
	}
	switch {
	case len(a.buf) > 0:
		n = copy(b, a.buf)
		a.buf = a.buf[n:]
		if len(a.buf) == 0 {
			a.buf = nil
		}
	case a.err != nil:
		return 0, a.err, true // as the connection would answer again
	default:
		a.pending.Store(false)
		return 0, nil, false
	}
	a.pending.Store(len(a.buf) > 0 || a.err != nil)
	return n, nil, true
}

// Close closes the connection once and forgets it.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		c.p.tracker.remove(c)
		c.flushHeld()
		if err := c.Conn.Close(); err != nil {
			c.closeErr = &errorBox{err}
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
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

func (c *trackedConn) base() *trackedConn { return c }

type tracked interface{ base() *trackedConn }

// tracker is the set of client connections that are open, by remote address
// (MITM requests find their connection by it). Two open connections can
// share a remote address only when the listener accepts on several local
// addresses; the newer one is then the one found, and the older ones wait in
// shared, which is nil otherwise.
type tracker struct {
	mu       sync.Mutex
	byRemote map[string]*trackedConn
	shared   map[*trackedConn]struct{}
	closed   bool
}

func (t *tracker) add(c *trackedConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.byRemote == nil {
		t.byRemote = make(map[string]*trackedConn)
	}
	if old := t.byRemote[c.remote]; old != nil {
		if t.shared == nil {
			t.shared = make(map[*trackedConn]struct{})
		}
		t.shared[old] = struct{}{}
	}
	t.byRemote[c.remote] = c
	return true
}

func (t *tracker) remove(c *trackedConn) {
	t.mu.Lock()
	if t.byRemote[c.remote] == c {
		delete(t.byRemote, c.remote)
	} else {
		delete(t.shared, c)
	}
	t.mu.Unlock()
}

func (t *tracker) lookup(remote string) *trackedConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byRemote[remote]
}

// each calls f for every open connection. Called with t.mu held.
func (t *tracker) each(f func(*trackedConn)) {
	for _, c := range t.byRemote {
		f(c)
	}
	for c := range t.shared {
		f(c)
	}
}

// closeAll refuses new connections and returns the open ones.
func (t *tracker) closeAll() []*trackedConn {
	t.mu.Lock()
	t.closed = true
	all := make([]*trackedConn, 0, len(t.byRemote)+len(t.shared))
	t.each(func(c *trackedConn) { all = append(all, c) })
	t.mu.Unlock()
	return all
}

// idle returns the hijacked connections, and those with a plain request in
// progress, that moved no byte for d, and refreshes the activity marks of the
// others. (A keep-alive connection between requests is left to the
// http.Server's own IdleTimeout.) Only the sampler calls it.
func (t *tracker) idle(now time.Time, d time.Duration) []*trackedConn {
	var out []*trackedConn
	at := monoNanos(now)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.each(func(c *trackedConn) {
		if !c.hijacked.Load() && c.busy.Load() == 0 {
			return
		}
		w := c.wire.Load()
		switch {
		case c.lastChange == 0 || w != c.lastWire:
			c.lastWire, c.lastChange = w, at
		case time.Duration(at-c.lastChange) >= d:
			out = append(out, c)
		}
	})
	return out
}

// listener wraps every accepted connection in a trackedConn.
type listener struct {
	net.Listener
	p *Proxy
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, p: l.p, remote: c.RemoteAddr().String()}
	if !l.p.tracker.add(tc) {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	if _, ok := c.(halfCloser); ok {
		return &trackedTCPConn{tc}, nil
	}
	return tc, nil
}

type connKey struct{}

// connCtx is the context of every plain-HTTP and CONNECT request on a client
// connection: the server's context, with the trackedConn as the value of
// connKey. It lives inside its trackedConn, so it costs no allocation.
type connCtx struct {
	context.Context
	c *trackedConn
}

// Value returns the trackedConn for connKey, and the server context's
// values for every other key.
func (x *connCtx) Value(key any) any {
	if _, ok := key.(connKey); ok {
		return x.c
	}
	return x.Context.Value(key)
}

// connContext is http.Server.ConnContext: it puts the trackedConn in every
// plain-HTTP and CONNECT request context. net/http calls it once per
// connection, before it serves the first request.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if t, ok := c.(tracked); ok {
		tc := t.base()
		tc.ctx = connCtx{Context: ctx, c: tc}
		return &tc.ctx
	}
	return ctx
}

func connFrom(ctx context.Context) *trackedConn {
	c, _ := ctx.Value(connKey{}).(*trackedConn)
	return c
}
