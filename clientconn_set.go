package proxywatch

import (
	"context"
	"net"
	"sync"
	"time"
)

type tracked interface{ base() *clientConn }

// clientSet is the set of client connections that are open, by remote address
// (MITM requests find their connection by it). Two open connections can
// share a remote address only when the listener accepts on several local
// addresses; the newer one is then the one found, and the older ones wait in
// shared, which is nil otherwise.
type clientSet struct {
	mu       sync.Mutex
	byRemote map[string]*clientConn
	shared   map[*clientConn]struct{}
	closed   bool
}

func (t *clientSet) add(c *clientConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.byRemote == nil {
		t.byRemote = make(map[string]*clientConn)
	}
	if old := t.byRemote[c.remote]; old != nil {
		if t.shared == nil {
			t.shared = make(map[*clientConn]struct{})
		}
		t.shared[old] = struct{}{}
	}
	t.byRemote[c.remote] = c
	return true
}

func (t *clientSet) remove(c *clientConn) {
	t.mu.Lock()
	if t.byRemote[c.remote] == c {
		delete(t.byRemote, c.remote)
	} else {
		delete(t.shared, c)
	}
	t.mu.Unlock()
}

func (t *clientSet) lookup(remote string) *clientConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byRemote[remote]
}

// each calls f for every open connection. Called with t.mu held.
func (t *clientSet) each(f func(*clientConn)) {
	for _, c := range t.byRemote {
		f(c)
	}
	for c := range t.shared {
		f(c)
	}
}

// closeAll refuses new connections and returns the open ones.
func (t *clientSet) closeAll() []*clientConn {
	t.mu.Lock()
	t.closed = true
	all := make([]*clientConn, 0, len(t.byRemote)+len(t.shared))
	t.each(func(c *clientConn) { all = append(all, c) })
	t.mu.Unlock()
	return all
}

// idle returns the hijacked connections, and those with a plain request in
// progress, that moved no byte for d, and refreshes the activity marks of the
// others. (A keep-alive connection between requests is left to the
// http.Server's own IdleTimeout.) Only the sampler calls it.
func (t *clientSet) idle(now time.Time, d time.Duration) []*clientConn {
	var out []*clientConn
	at := monoNanos(now)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.each(func(c *clientConn) {
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

// listener wraps every accepted connection in a clientConn.
type listener struct {
	net.Listener
	p *Proxy
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tuneSocket(c)
	tc := &clientConn{Conn: c, p: l.p, remote: c.RemoteAddr().String()}
	if !l.p.clients.add(tc) {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	if _, ok := c.(halfCloser); ok {
		return &clientTCPConn{tc}, nil
	}
	return tc, nil
}

type connKey struct{}

// connCtx is the context of every plain-HTTP and CONNECT request on a client
// connection: the server's context, with the clientConn as the value of
// connKey. It lives inside its clientConn, so it costs no allocation.
type connCtx struct {
	context.Context
	c *clientConn
}

// Value returns the clientConn for connKey, and the server context's
// values for every other key.
func (x *connCtx) Value(key any) any {
	if _, ok := key.(connKey); ok {
		return x.c
	}
	return x.Context.Value(key)
}

// connContext is http.Server.ConnContext: it puts the clientConn in every
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

func connFrom(ctx context.Context) *clientConn {
	c, _ := ctx.Value(connKey{}).(*clientConn)
	return c
}

// closeIdle closes the client connections that carry something (see
// clientSet.idle) and moved no byte for the idle timeout, ending their
// connections with EndIdleTimeout.
func (p *Proxy) closeIdle(now time.Time) {
	for _, c := range p.clients.idle(now, p.idleTimeout) {
		p.closeWhere(EndIdleTimeout, func(e *entry) bool { return e.client == c })
		_ = c.Close()
	}
}
