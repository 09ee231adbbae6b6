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
type trackedConn struct {
	net.Conn
	p      *Proxy
	remote string

	wire     atomic.Uint64 // bytes read plus written, for idle detection only
	hijacked atomic.Bool
	eof      atomic.Bool                  // the client finished sending (read EOF)
	failed   atomic.Pointer[errorBox]     // first read or write error other than EOF
	connect  atomic.Pointer[connectStart] // set by the CONNECT hook

	closeOnce sync.Once
	closeErr  error

	// Owned by the sampler goroutine.
	lastWire   uint64
	lastChange time.Time
}

// trackedTCPConn is a trackedConn over a connection that can half-close.
// goproxy only keeps a tunnel's half-close semantics when both sides have
// CloseWrite and CloseRead, so the wrapper must keep them.
type trackedTCPConn struct {
	*trackedConn
	hc halfCloser
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

func (c *trackedTCPConn) CloseWrite() error { return c.hc.CloseWrite() }
func (c *trackedTCPConn) CloseRead() error  { return c.hc.CloseRead() }

type errorBox struct{ err error }

// connectStart is what the CONNECT hook learns before goproxy decides what
// to do with the tunnel.
type connectStart struct {
	id    ConnID
	host  string
	start time.Time
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.wire.Add(uint64(n))
	}
	if err != nil {
		c.noteErr(err)
	}
	return n, err
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.wire.Add(uint64(n))
	}
	if err != nil {
		c.noteErr(err)
	}
	return n, err
}

func (c *trackedConn) noteErr(err error) {
	if isEOF(err) {
		c.eof.Store(true)
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

// Close closes the connection once and forgets it.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		c.p.tracker.remove(c)
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// NetConn returns the wrapped connection.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

func (c *trackedConn) base() *trackedConn { return c }

type tracked interface{ base() *trackedConn }

// tracker is the set of client connections that are open.
type tracker struct {
	mu       sync.Mutex
	conns    map[*trackedConn]struct{}
	byRemote map[string]*trackedConn
	closed   bool
}

func (t *tracker) add(c *trackedConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.conns == nil {
		t.conns = make(map[*trackedConn]struct{})
		t.byRemote = make(map[string]*trackedConn)
	}
	t.conns[c] = struct{}{}
	t.byRemote[c.remote] = c
	return true
}

func (t *tracker) remove(c *trackedConn) {
	t.mu.Lock()
	delete(t.conns, c)
	if t.byRemote[c.remote] == c {
		delete(t.byRemote, c.remote)
	}
	t.mu.Unlock()
}

func (t *tracker) lookup(remote string) *trackedConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byRemote[remote]
}

// closeAll refuses new connections and returns the open ones.
func (t *tracker) closeAll() []*trackedConn {
	t.mu.Lock()
	t.closed = true
	all := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		all = append(all, c)
	}
	t.mu.Unlock()
	return all
}

// idle returns the hijacked connections that moved no byte for d, and
// refreshes the activity marks of the others. Only the sampler calls it.
func (t *tracker) idle(now time.Time, d time.Duration) []*trackedConn {
	var out []*trackedConn
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		if !c.hijacked.Load() {
			continue
		}
		w := c.wire.Load()
		switch {
		case c.lastChange.IsZero() || w != c.lastWire:
			c.lastWire, c.lastChange = w, now
		case now.Sub(c.lastChange) >= d:
			out = append(out, c)
		}
	}
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
	if hc, ok := c.(halfCloser); ok {
		return &trackedTCPConn{trackedConn: tc, hc: hc}, nil
	}
	return tc, nil
}

type connKey struct{}

// connContext is http.Server.ConnContext: it puts the trackedConn in every
// plain-HTTP and CONNECT request context.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if t, ok := c.(tracked); ok {
		return context.WithValue(ctx, connKey{}, t.base())
	}
	return ctx
}

func connFrom(ctx context.Context) *trackedConn {
	c, _ := ctx.Value(connKey{}).(*trackedConn)
	return c
}
