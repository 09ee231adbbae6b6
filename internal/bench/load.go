package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// target is what a scenario runs against: no proxy (direct) or one child.
type target struct {
	name  string
	child *child         // nil for direct
	proxy *url.URL       // nil for direct
	roots *x509.CertPool // the upstreams' certificate and this proxy's MITM CA
}

// meter counts the units a scenario moves while it is measuring. Workers run
// through a warm-up, the measured window and a short tail; only what happens
// inside the window counts.
type meter struct {
	phase atomic.Int32 // 0 warm-up, 1 measuring, 2 done
	units atomic.Int64
	errs  atomic.Int64

	mu       sync.Mutex
	lat      []time.Duration
	firstErr error
}

func (m *meter) measuring() bool { return m.phase.Load() == 1 }

// fail records a worker error (the first one is kept) and slows the worker
// down a little so that a failing proxy does not spin.
func (m *meter) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	m.errs.Add(1)
	m.mu.Lock()
	if m.firstErr == nil {
		m.firstErr = err
	}
	m.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Millisecond):
	}
}

// request runs do in a loop, counting each request that started and ended
// inside the window, and its latency.
func (m *meter) request(ctx context.Context, do func() error) {
	var lat []time.Duration
	defer func() {
		m.mu.Lock()
		m.lat = append(m.lat, lat...)
		m.mu.Unlock()
	}()
	for ctx.Err() == nil {
		in := m.measuring()
		t0 := time.Now()
		if err := do(); err != nil {
			m.fail(ctx, err)
			continue
		}
		if in && m.measuring() {
			m.units.Add(1)
			lat = append(lat, time.Since(t0))
		}
	}
}

// countingWriter counts the bytes written to it while the meter measures.
type countingWriter struct{ m *meter }

func (w countingWriter) Write(p []byte) (int, error) {
	if w.m.measuring() {
		w.m.units.Add(int64(len(p)))
	}
	return len(p), nil
}

// scenario is one workload. Its workers run until ctx is done.
type scenario struct {
	name    string
	what    string // one line for the report
	unit    string // "req/s", "MB/s" or "msg/s"
	bytes   bool   // units are bytes (reported as MB/s, CPU per GB)
	latency bool   // report p50 and p99
	workers int
	work    func(ctx context.Context, e *env, t *target, m *meter, i int)
	// setup, when set, runs before the workers and its cleanup after them.
	setup func(e *env, t *target) (state any, cleanup func(), err error)
}

// env is what the scenarios share.
type env struct {
	up    *upstreams
	state any // from scenario.setup
}

// Bulk transfers never end by themselves within a window: the load stops
// them.
const endless = 1 << 40

func newTransport(t *target, conns int) *http.Transport {
	tr := &http.Transport{
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		TLSClientConfig:     &tls.Config{RootCAs: t.roots},
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      64 << 10,
	}
	if t.proxy != nil {
		tr.Proxy = http.ProxyURL(t.proxy)
	}
	return tr
}

// clientState is the setup of the HTTP scenarios: one client for all
// workers of a run.
type clientState struct{ c *http.Client }

func httpSetup(conns int, keepAlive bool) func(*env, *target) (any, func(), error) {
	return func(_ *env, t *target) (any, func(), error) {
		tr := newTransport(t, conns)
		tr.DisableKeepAlives = !keepAlive
		return &clientState{c: &http.Client{Transport: tr}}, tr.CloseIdleConnections, nil
	}
}

// get fetches url and reads the whole body into w.
func get(ctx context.Context, c *http.Client, url string, w io.Writer, buf []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	n, err := io.CopyBuffer(w, resp.Body, buf)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("GET %s: %d of %d bytes", url, n, resp.ContentLength)
	}
	return err
}

func smallRequests(name, what string, conns int, keepAlive bool, url func(*upstreams) string) scenario {
	return scenario{
		name: name, what: what, unit: "req/s", latency: true, workers: conns,
		setup: httpSetup(conns, keepAlive),
		work: func(ctx context.Context, e *env, t *target, m *meter, _ int) {
			c := e.state.(*clientState).c
			u := url(e.up)
			buf := make([]byte, 4096)
			m.request(ctx, func() error { return get(ctx, c, u, io.Discard, buf) })
		},
	}
}

func downloads(name, what string, streams int, url func(*upstreams) string) scenario {
	return scenario{
		name: name, what: what, unit: "MB/s", bytes: true, workers: streams,
		setup: httpSetup(streams, true),
		work: func(ctx context.Context, e *env, t *target, m *meter, _ int) {
			c := e.state.(*clientState).c
			u := url(e.up) + "/big?n=" + strconv.Itoa(endless)
			buf := make([]byte, 256<<10)
			for ctx.Err() == nil {
				if err := get(ctx, c, u, countingWriter{m}, buf); err != nil {
					m.fail(ctx, err)
				}
			}
		},
	}
}

// countingReader is an endless request body that counts what is read from
// it while the meter measures.
type countingReader struct{ m *meter }

func (r countingReader) Read(p []byte) (int, error) {
	n := copy(p, chunk)
	for n < len(p) {
		n += copy(p[n:], chunk)
	}
	if r.m.measuring() {
		r.m.units.Add(int64(n))
	}
	return n, nil
}

func upload() scenario {
	return scenario{
		name: "http-upload", what: "one large plain-HTTP upload", unit: "MB/s", bytes: true, workers: 1,
		setup: httpSetup(1, true),
		work: func(ctx context.Context, e *env, t *target, m *meter, _ int) {
			c := e.state.(*clientState).c
			u := "http://" + e.up.plain + "/upload"
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, io.NopCloser(countingReader{m}))
				if err != nil {
					m.fail(ctx, err)
					continue
				}
				req.ContentLength = endless
				resp, err := c.Do(req)
				if err != nil {
					m.fail(ctx, err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		},
	}
}

// absoluteURIConn turns the request line of the WebSocket handshake that
// gorilla writes ("GET /ws HTTP/1.1") into the absolute form a forward proxy
// takes for plain HTTP ("GET http://host/ws HTTP/1.1"). gorilla itself only
// reaches a proxy through CONNECT, which would make this a tunnel.
type absoluteURIConn struct {
	net.Conn
	prefix string // "http://host:port"
	done   bool
}

func (c *absoluteURIConn) Write(b []byte) (int, error) {
	if !c.done {
		c.done = true
		if rest, ok := bytes.CutPrefix(b, []byte("GET /")); ok {
			line := append([]byte("GET "+c.prefix+"/"), rest...)
			if _, err := c.Conn.Write(line); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	return c.Conn.Write(b)
}

func dialWS(ctx context.Context, t *target, up string) (*websocket.Conn, error) {
	d := websocket.Dialer{ReadBufferSize: 4096, WriteBufferSize: 4096, HandshakeTimeout: 10 * time.Second}
	if t.proxy != nil {
		proxyAddr := t.proxy.Host
		d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", proxyAddr)
			if err != nil {
				return nil, err
			}
			return &absoluteURIConn{Conn: c, prefix: "http://" + addr}, nil
		}
	}
	c, resp, err := d.DialContext(ctx, "ws://"+up+"/ws", nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	return c, err
}

func wsEcho() scenario {
	const conns, size = 50, 1024
	return scenario{
		name: "ws-echo", what: fmt.Sprintf("WebSocket echo over plain HTTP, %d sockets, %d B messages", conns, size),
		unit: "msg/s", latency: true, workers: conns,
		work: func(ctx context.Context, e *env, t *target, m *meter, _ int) {
			var cur atomic.Pointer[websocket.Conn]
			stop := context.AfterFunc(ctx, func() {
				if c := cur.Load(); c != nil {
					_ = c.NetConn().Close() // unblocks ReadMessage
				}
			})
			defer stop()
			defer func() {
				if c := cur.Load(); c != nil {
					_ = c.Close()
				}
			}()
			msg := chunk[:size]
			m.request(ctx, func() error {
				c := cur.Load()
				if c == nil {
					var err error
					if c, err = dialWS(ctx, t, e.up.plain); err != nil {
						return err
					}
					cur.Store(c)
					if ctx.Err() != nil {
						_ = c.NetConn().Close()
					}
				}
				err := c.WriteMessage(websocket.BinaryMessage, msg)
				if err == nil {
					var got []byte
					if _, got, err = c.ReadMessage(); err == nil && len(got) != size {
						err = fmt.Errorf("echo of %d bytes", len(got))
					}
				}
				if err != nil {
					_ = c.Close()
					cur.Store(nil)
				}
				return err
			})
		},
	}
}

// scenarios returns every workload, in the order they run and are reported.
func scenarios() []scenario {
	plain := func(u *upstreams) string { return "http://" + u.plain }
	tunnel := func(u *upstreams) string { return "https://" + u.tunnel }
	mitm := func(u *upstreams) string { return "https://" + u.mitm }
	small := func(base func(*upstreams) string) func(*upstreams) string {
		return func(u *upstreams) string { return base(u) + "/small" }
	}
	return []scenario{
		smallRequests("http-small", "1 KiB plain-HTTP GETs, 50 keep-alive clients", 50, true, small(plain)),
		downloads("http-download", "one large plain-HTTP download", 1, plain),
		downloads("http-download-8", "8 parallel large plain-HTTP downloads", 8, plain),
		upload(),
		smallRequests("tunnel-small", "1 KiB HTTPS GETs through CONNECT tunnels, 50 keep-alive clients", 50, true, small(tunnel)),
		downloads("tunnel-bulk", "one large HTTPS download through a CONNECT tunnel", 1, tunnel),
		smallRequests("mitm-small", "1 KiB HTTPS GETs decrypted by the proxy (MITM), 50 keep-alive clients", 50, true, small(mitm)),
		smallRequests("mitm-handshake", "1 KiB MITM HTTPS GETs, a new CONNECT and TLS handshake each, 50 clients", 50, false, small(mitm)),
		downloads("mitm-bulk", "one large HTTPS download decrypted by the proxy (MITM)", 1, mitm),
		wsEcho(),
	}
}

// sample is one measured run of one scenario against one target.
type sample struct {
	rate     float64 // units per second
	p50, p99 time.Duration
	cpu      time.Duration // the proxy's CPU time in the window (0 for direct)
	units    int64
	peakRSS  uint64
	errs     int64
	firstErr error
}

// measure runs sc against t: warm-up, then a window of dur whose units and
// proxy CPU are counted, then it stops the workers.
func measure(sc scenario, e *env, t *target, warm, dur time.Duration) (sample, error) {
	run := *e
	if sc.setup != nil {
		st, cleanup, err := sc.setup(e, t)
		if err != nil {
			return sample{}, err
		}
		defer cleanup()
		run.state = st
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &meter{}
	var wg sync.WaitGroup
	for i := range sc.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc.work(ctx, &run, t, m, i)
		}()
	}
	time.Sleep(warm)

	var before childStats
	var err error
	if t.child != nil {
		t.child.resetPeakRSS()
		if before, err = t.child.stats(); err != nil {
			cancel()
			wg.Wait()
			return sample{}, err
		}
	}
	m.phase.Store(1)
	t0 := time.Now()
	time.Sleep(dur)
	m.phase.Store(2)
	elapsed := time.Since(t0)
	var after childStats
	if t.child != nil {
		after, err = t.child.stats()
	}
	cancel()
	wg.Wait()
	if err != nil {
		return sample{}, err
	}

	s := sample{
		units:    m.units.Load(),
		errs:     m.errs.Load(),
		firstErr: m.firstErr,
	}
	s.rate = float64(s.units) / elapsed.Seconds()
	if t.child != nil {
		s.cpu = time.Duration(after.CPUNanos - before.CPUNanos)
		s.peakRSS = t.child.peakRSS()
	}
	if len(m.lat) > 0 {
		slices.Sort(m.lat)
		s.p50 = m.lat[len(m.lat)/2]
		s.p99 = m.lat[min(len(m.lat)-1, len(m.lat)*99/100)]
	}
	if s.units == 0 && s.firstErr == nil {
		s.firstErr = errors.New("nothing moved")
	}
	return s, nil
}

// memPerConn opens n idle CONNECT tunnels through t to the holding server
// and returns the growth of the proxy's heap and of its goroutine stacks
// (after GC) per tunnel, and the share of a core the proxy then uses while
// the tunnels stay idle for a second.
func memPerConn(e *env, t *target, n int, heapProfile string) (heap, stack, idleCPU float64, err error) {
	if heapProfile != "" {
		if err := t.child.command("sample-all-allocs", nil); err != nil {
			heapProfile = "" // a profile is a bonus, not a reason to fail the run
		}
	}
	before, err := t.child.mem()
	if err != nil {
		return 0, 0, 0, err
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	req := "CONNECT " + e.up.hold + " HTTP/1.1\r\nHost: " + e.up.hold + "\r\n\r\n"
	for range n {
		c, err := net.Dial("tcp", t.proxy.Host)
		if err != nil {
			return 0, 0, 0, err
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, req); err != nil {
			return 0, 0, 0, err
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("CONNECT: %v", err)
		}
		if resp.StatusCode != http.StatusOK {
			return 0, 0, 0, fmt.Errorf("CONNECT: %s", resp.Status)
		}
		_ = c.SetReadDeadline(time.Time{})
	}
	time.Sleep(300 * time.Millisecond) // let the proxy's goroutines settle
	after, err := t.child.mem()
	if err != nil {
		return 0, 0, 0, err
	}
	if heapProfile != "" {
		_ = t.child.command("heap-profile "+heapProfile, nil)
	}
	heap = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(n)
	stack = float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n)

	// What the idle tunnels cost in CPU while nothing moves.
	c0, err := t.child.stats()
	if err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	time.Sleep(time.Second)
	c1, err := t.child.stats()
	if err != nil {
		return 0, 0, 0, err
	}
	idleCPU = float64(c1.CPUNanos-c0.CPUNanos) / float64(time.Since(t0).Nanoseconds())
	return heap, stack, idleCPU, nil
}
