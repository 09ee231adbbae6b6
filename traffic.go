package proxywatch

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// TrafficSample is what the sampler measured over one interval.
type TrafficSample struct {
	Time     time.Time     // when the sample was taken
	Interval time.Duration // real time since the previous sample (not the nominal interval)

	// Up and Down are the bytes counted during Interval; UpTotal and DownTotal
	// are the running totals since the Proxy was created. Up is client to
	// upstream, Down is upstream to client (package documentation, # Counting).
	Up, Down           uint64
	UpTotal, DownTotal uint64

	Live int // connections in the live set at Time
}

// UpRate returns Up in bytes per second over the sample's real interval.
func (s TrafficSample) UpRate() float64 { return perSecond(s.Up, s.Interval) }

// DownRate returns Down in bytes per second over the sample's real interval.
func (s TrafficSample) DownRate() float64 { return perSecond(s.Down, s.Interval) }

func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// TrafficObserver receives one TrafficSample per sampler tick. See the package
// documentation (# Observers) for the delivery contract.
type TrafficObserver interface {
	ObserveTraffic(TrafficSample)
}

// TrafficObserverFunc adapts a function to TrafficObserver.
type TrafficObserverFunc func(TrafficSample)

// ObserveTraffic calls f(s). It implements TrafficObserver.
func (f TrafficObserverFunc) ObserveTraffic(s TrafficSample) { f(s) }

// MultiTrafficObserver returns an observer that passes each sample to every
// non-nil observer in obs, in order.
func MultiTrafficObserver(obs ...TrafficObserver) TrafficObserver {
	return TrafficObserverFunc(func(s TrafficSample) {
		for _, o := range obs {
			if o != nil {
				o.ObserveTraffic(s)
			}
		}
	})
}

// Totals returns the bytes counted since New: up is client to upstream, down
// upstream to client. It equals the sum over every connection, live and closed,
// by construction: it is that sum.
func (p *Proxy) Totals() (up, down uint64) {
	p.reg.mu.Lock()
	defer p.reg.mu.Unlock()
	return p.reg.totalsLocked()
}

// Stats is a snapshot of the Proxy's counters.
type Stats struct {
	Up, Down       uint64 // as Totals
	Live           int    // connections in the live set
	Opened, Closed uint64 // connections ever opened and closed
	Logs           uint64 // log records made (some log observer wanted their level), dropped ones included
	Dropped        uint64 // observer events dropped because an observer did not keep up
}

// Stats returns a snapshot of the Proxy's counters.
func (p *Proxy) Stats() Stats {
	p.reg.mu.Lock()
	up, down := p.reg.totalsLocked()
	s := Stats{Up: up, Down: down, Live: len(p.reg.live), Opened: p.reg.opened, Closed: p.reg.closed}
	p.reg.mu.Unlock()
	s.Logs = p.sink.accepted()
	s.Dropped = p.obs.dropped.Load()
	return s
}

// sampler is the Proxy's one periodic goroutine: it computes per-connection
// rates over the real elapsed interval, closes idle client connections and
// hands a TrafficSample to the traffic observers.
func (p *Proxy) sampler(stop <-chan struct{}) {
	t := time.NewTicker(p.sampleInterval)
	defer t.Stop()
	prev := time.Now()
	prevUp, prevDown := p.Totals()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			now := time.Now() // the tick's own time is stale when the goroutine ran late
			s := p.sample(now)
			s.Interval = now.Sub(prev)
			s.Up, s.Down = s.UpTotal-prevUp, s.DownTotal-prevDown
			prev, prevUp, prevDown = now, s.UpTotal, s.DownTotal
			p.emitTraffic(s)
			if p.idleTimeout > 0 {
				p.closeIdle(now)
			}
		}
	}
}

// sample updates every live entry's rates and returns the totals.
func (p *Proxy) sample(now time.Time) TrafficSample {
	p.reg.mu.Lock()
	defer p.reg.mu.Unlock()
	s := TrafficSample{Time: now, Live: len(p.reg.live)}
	s.UpTotal, s.DownTotal = p.reg.closedUp, p.reg.closedDown
	for _, e := range p.reg.live {
		up, down := e.up.Load(), e.down.Load()
		s.UpTotal += up
		s.DownTotal += down
		if e.busy && (up != e.lastUp || down != e.lastDown) {
			// A plain request whose bytes move is not idle, even while
			// net/http still buffers them and its client connection has
			// not seen a byte (the idle timeout looks at that connection).
			e.client.wire.Add(1)
		}
		// Every entry that was live at the last sample was measured then:
		// its interval is the registry's, not one of its own.
		if e.sampled {
			dt := now.Sub(p.reg.sampledAt)
			e.upRate = perSecond(up-e.lastUp, dt)
			e.downRate = perSecond(down-e.lastDown, dt)
		} else if dt := now.Sub(e.info.Start); dt > 0 {
			e.upRate = perSecond(up, dt)
			e.downRate = perSecond(down, dt)
		}
		e.lastUp, e.lastDown, e.sampled = up, down, true
	}
	p.reg.sampledAt = now
	return s
}

// closeIdle closes the client connections that carry something (see
// tracker.idle) and moved no byte for the idle timeout, ending their
// connections with EndIdleTimeout.
func (p *Proxy) closeIdle(now time.Time) {
	for _, c := range p.tracker.idle(now, p.idleTimeout) {
		p.closeWhere(EndIdleTimeout, func(e *entry) bool { return e.client == c })
		_ = c.Close()
	}
}

// The counting wrappers below are the whole I/O path: each Read and Write does
// one atomic add on its connection's counter. They never call an observer.

// reqBody counts a request body as the upstream reads it (up).
type reqBody struct {
	io.ReadCloser
	e *entry
}

func (b *reqBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.e.up.Add(uint64(n))
	}
	if err != nil {
		if isEOF(err) {
			b.e.watchClient()
		} else {
			b.e.reqErr.CompareAndSwap(nil, &errorBox{err})
		}
	}
	return n, err
}

// respBody counts a response body as goproxy copies it to the client (down).
// Closing it is idempotent: goproxy closes it twice in plain mode.
type respBody struct {
	io.ReadCloser
	e    *entry
	p    *Proxy
	once sync.Once
}

func (b *respBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		b.e.down.Add(uint64(n))
	}
	if err != nil {
		if isEOF(err) {
			b.e.bodyDone.Store(true)
		} else {
			b.p.upstreamBroke(b.e, err)
		}
	}
	return n, err
}

func (b *respBody) Close() error {
	var err error
	b.once.Do(func() { err = b.ReadCloser.Close() })
	return err
}

// wsBody is the upstream side of a WebSocket after the 101: goproxy reads
// from it (down) and writes the client's frames into it (up). It must keep
// io.Writer, or goproxy refuses the upgrade.
type wsBody struct {
	io.ReadWriteCloser
	e    *entry
	once sync.Once
}

func (b *wsBody) Read(p []byte) (int, error) {
	n, err := b.ReadWriteCloser.Read(p)
	if n > 0 {
		b.e.down.Add(uint64(n))
	}
	if err != nil {
		b.failed(err)
	}
	return n, err
}

func (b *wsBody) Write(p []byte) (int, error) {
	n, err := b.ReadWriteCloser.Write(p)
	if n > 0 {
		b.e.up.Add(uint64(n))
	}
	if err != nil {
		b.failed(err)
	}
	return n, err
}

// failed notes an upstream failure (a reset, not a clean close; not a close
// on this side, which goproxy does once either direction ended).
func (b *wsBody) failed(err error) {
	if !isEOF(err) && !errors.Is(err, net.ErrClosed) {
		b.e.bodyErr.CompareAndSwap(nil, &errorBox{err})
	}
}

func (b *wsBody) Close() error {
	var err error
	b.once.Do(func() { err = b.ReadWriteCloser.Close() })
	return err
}

// tunnelConn is a CONNECT tunnel's upstream connection: what is written to it
// came from the client (up), what is read from it goes to the client (down).
// Its first Close ends the tunnel; goproxy closes it after both directions
// finished (or one failed), so its counts are final then.
type tunnelConn struct {
	net.Conn
	e    *entry
	p    *Proxy
	once sync.Once
	err  error
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
func (c *tunnelTCPConn) CloseRead() error  { return c.Conn.(halfCloser).CloseRead() }

func (c *tunnelConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.e.down.Add(uint64(n))
	}
	if err != nil && !isEOF(err) {
		c.e.bodyErr.CompareAndSwap(nil, &errorBox{err})
	}
	return n, err
}

func (c *tunnelConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.e.up.Add(uint64(n))
	}
	return n, err
}

func (c *tunnelConn) Close() error {
	c.once.Do(func() {
		c.err = c.Conn.Close()
		c.p.tunnelDone(c.e)
	})
	return c.err
}

// NetConn returns the wrapped connection.
func (c *tunnelConn) NetConn() net.Conn { return c.Conn }

func isEOF(err error) bool { return err == io.EOF || errors.Is(err, io.EOF) }

// Tunnels keep the kernel's zero-copy path. goproxy copies a tunnel with
// io.Copy between the two connections, which on Linux splices socket to
// socket when both ends are bare *net.TCPConn. The wrappers below implement
// io.ReaderFrom so that io.Copy still reaches splice, in bounded slices so
// that counts stay live: a slice ends after spliceChunk bytes or after
// spliceSlice of time, whichever comes first, and its bytes are counted then.
const (
	spliceChunk = 4 << 20
	spliceSlice = 250 * time.Millisecond
)

// spliceCopy copies src to dst until EOF or an error, counting each slice.
// A slice that moved nothing means this direction of the tunnel is idle: the
// copy then waits for src to have bytes (waitReadable) before slicing again,
// so that an idle tunnel costs no wake-up at all. Woken every slice, 1000
// idle tunnels would keep a tenth of a core busy.
func spliceCopy(dst, src *net.TCPConn, count func(int64)) (int64, error) {
	var total int64
	defer src.SetReadDeadline(time.Time{})
	for {
		_ = src.SetReadDeadline(time.Now().Add(spliceSlice))
		n, err := dst.ReadFrom(&io.LimitedReader{R: src, N: spliceChunk})
		if n > 0 {
			total += n
			count(n)
		}
		switch {
		case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
			if n == 0 {
				if err := waitReadable(src); err != nil {
					return total, err
				}
			}
			continue // the slice ended: count and go on
		case err != nil:
			return total, err
		case n < spliceChunk:
			return total, nil // EOF
		}
	}
}

// peerFailed reports whether writing to c fails, after a splice into c
// failed. A splice's error does not say which side it came from: reading the
// source or writing c. A write of no bytes still reports a reset or closed
// peer (on Linux, where splice is used), so it tells whose the failure was.
func peerFailed(c *net.TCPConn) bool {
	_, err := c.Write(nil)
	return err != nil
}

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
func (c *trackedTCPConn) ReadFrom(r io.Reader) (int64, error) {
	dst, ok1 := c.Conn.(*net.TCPConn)
	t, ok2 := r.(*tunnelTCPConn)
	if ok1 && ok2 {
		if src, ok := t.Conn.(*net.TCPConn); ok {
			n, err := spliceCopy(dst, src, func(n int64) {
				t.e.down.Add(uint64(n))
				c.wire.Add(uint64(n))
			})
			if err != nil {
				if peerFailed(dst) {
					c.noteErr(err) // writing to the client failed: it went away
				} else {
					t.e.bodyErr.CompareAndSwap(nil, &errorBox{err})
				}
			}
			return n, err
		}
	}
	return copyPooled(writerOnly{c}, r)
}

// ReadFrom copies the client side of a tunnel to the upstream. It splices
// when r is the tunnel's client connection.
func (c *tunnelTCPConn) ReadFrom(r io.Reader) (int64, error) {
	dst, ok1 := c.Conn.(*net.TCPConn)
	t, ok2 := r.(*trackedTCPConn)
	if ok1 && ok2 {
		if src, ok := t.Conn.(*net.TCPConn); ok {
			n, err := spliceCopy(dst, src, func(n int64) {
				c.e.up.Add(uint64(n))
				t.wire.Add(uint64(n))
			})
			if err != nil {
				if peerFailed(dst) {
					c.e.bodyErr.CompareAndSwap(nil, &errorBox{err}) // writing upstream failed
				} else {
					t.noteErr(err)
				}
			}
			return n, err
		}
	}
	return copyPooled(writerOnly{c}, r)
}
