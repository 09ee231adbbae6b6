package proxywatch_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
)

// slowRate is the pace of a slow reader: 2,500 bytes every 50 ms, a phone on
// a poor link.
const slowRate = 50_000 // bytes per second

// paced is a connection that takes bytes from its socket at a fixed rate,
// as a slow reader on a real network does; its kernel buffers fill and the
// sender's writes wait. Its socket announces an Ethernet MSS (ethernetMSS).
type paced struct {
	net.Conn
	start time.Time
	rate  int64
	read  atomic.Int64 // bytes taken from the socket
}

func (c *paced) Read(b []byte) (int, error) {
	for {
		allowed := int64(time.Since(c.start).Seconds()*float64(c.rate)) - c.read.Load()
		if allowed > 0 {
			b = b[:min(int64(len(b)), allowed)]
			n, err := c.Conn.Read(b)
			c.read.Add(int64(n))
			return n, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slowEnv is one mode's proxy, upstream and a client that reads slowly.
type slowEnv struct {
	p      *proxywatch.Proxy
	target string
	hc     *http.Client
	conn   chan *paced
	rcvbuf int // the client socket's receive buffer, if set
}

// bigUpstream serves a body far longer than any run reads, in 16 KiB writes.
func bigUpstream(t *testing.T, tlsOn bool) *httptest.Server {
	chunk := make([]byte, 16<<10)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(256<<20))
		for range 256 << 20 / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsOn {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

// modeProxy starts a Proxy for mode in front of up: decrypting every CONNECT
// for MITM, passing it through otherwise. roots is what a client must trust.
func modeProxy(t *testing.T, mode string, up *httptest.Server) (p *proxywatch.Proxy, pu *url.URL, roots *x509.CertPool) {
	if mode == modeMITM {
		return mitmSetup(t, up)
	}
	p, pu = setup(t, nil)
	roots = x509.NewCertPool()
	if up.TLS != nil {
		roots.AddCert(up.Certificate())
	}
	return p, pu, roots
}

func newSlowEnv(t *testing.T, mode string, rcvbuf int) *slowEnv {
	up := bigUpstream(t, mode != modePlain)
	env := &slowEnv{target: up.URL + "/big", conn: make(chan *paced, 1), rcvbuf: rcvbuf}
	var pu *url.URL
	var roots *x509.CertPool
	env.p, pu, roots = modeProxy(t, mode, up)
	tr := &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{Control: ethernetMSS}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if env.rcvbuf > 0 {
				_ = c.(*net.TCPConn).SetReadBuffer(env.rcvbuf)
			}
			pc := &paced{Conn: c, start: time.Now(), rate: slowRate}
			env.conn <- pc
			return pc, nil
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	env.hc = &http.Client{Transport: tr}
	return env
}

// start begins the slow download and returns the connection's id, a count of
// the body bytes the client's program has read, and a channel that reports
// the error the read ended with.
func (env *slowEnv) start(t *testing.T, ctx context.Context) (proxywatch.ConnID, *atomic.Int64, <-chan error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.target, nil)
	var body atomic.Int64
	done := make(chan error, 1)
	go func() {
		resp, err := env.hc.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 2500)
		for {
			n, err := resp.Body.Read(buf)
			body.Add(int64(n))
			if err != nil {
				done <- err
				return
			}
		}
	}()
	return movingConn(t, env.p, "the download's connection", connDown), &body, done
}

// connDown and connUp are the counts watchLead follows.
func connDown(c proxywatch.ConnInfo) uint64 { return c.Down }
func connUp(c proxywatch.ConnInfo) uint64   { return c.Up }

// movingConn waits until a connection of p has a count above zero, and
// returns its id: the tests here give each proxy one connection.
func movingConn(t *testing.T, p *proxywatch.Proxy, what string, count func(proxywatch.ConnInfo) uint64) proxywatch.ConnID {
	t.Helper()
	var id proxywatch.ConnID
	waitFor(t, what, func() bool {
		for _, c := range p.Connections() {
			if count(c) > 0 {
				id = c.ID
				return true
			}
		}
		return false
	})
	return id
}

// liveCount returns a reader of live connection id's count, which fails the
// test once the connection has ended.
func liveCount(t *testing.T, p *proxywatch.Proxy, id proxywatch.ConnID, count func(proxywatch.ConnInfo) uint64) func() int64 {
	return func() int64 {
		ci, ok := p.Connection(id)
		if !ok {
			t.Fatalf("connection %d ended", id)
		}
		return int64(count(ci))
	}
}

// readerBuffer is the receive buffer of a slow reader in the tests of its
// pace. A fixed size turns off the kernel's autotuning, which grows a
// reader's buffer while it runs: bytes its kernel took and acknowledged but
// its program has not read, which no sender can tell apart. With it fixed
// what the program read is the measure, up to a constant buffer.
const readerBuffer = 64 << 10

// A client that reads 50 KB/s is counted as it reads, in every mode: the
// proxy's count never leads what the client's program has read by more than
// 512 KiB (the kernel buffers the proxy fills, bounded by TCP_NOTSENT_LOWAT,
// plus the client's own receive buffer), and never trails it.
func TestSlowReaderCountedAsItReads(t *testing.T) {
	t.Parallel() // mostly waiting on slow readers: they run beside each other
	for _, mode := range httpModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			env := newSlowEnv(t, mode, readerBuffer)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			id, body, _ := env.start(t, ctx)
			watchLead(t, liveCount(t, env.p, id, connDown), body.Load)
		})
	}
}

// An upload to an upstream that reads 50 KB/s is counted as the upstream
// reads it, in every mode, with the same bounds as a slow client's download:
// the proxy's sockets to upstreams hold no more unsent than its client
// sockets do.
func TestSlowUpstreamReaderCountedAsItReads(t *testing.T) {
	t.Parallel() // mostly waiting on slow readers: they run beside each other
	for _, mode := range httpModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var read atomic.Int64
			up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, 2500)
				for {
					n, err := r.Body.Read(buf)
					read.Add(int64(n))
					if err != nil {
						return
					}
				}
			}))
			l, err := (&net.ListenConfig{Control: ethernetMSS}).Listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			up.Listener = pacedListener{l}
			up.Config.ErrorLog = log.New(io.Discard, "", 0)
			if mode == modePlain {
				up.Start()
			} else {
				up.StartTLS()
			}
			t.Cleanup(up.Close)
			p, pu, roots := modeProxy(t, mode, up)
			hc := client(t, pu, roots)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, up.URL+"/upload", io.LimitReader(zeros{}, 256<<20))
			req.ContentLength = 256 << 20
			go func() {
				if resp, err := hc.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			id := movingConn(t, p, "the upload's connection", connUp)
			watchLead(t, liveCount(t, p, id, connUp), read.Load)
		})
	}
}

// pacedListener paces every connection it accepts at slowRate.
type pacedListener struct{ net.Listener }

func (l pacedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_ = c.(*net.TCPConn).SetReadBuffer(readerBuffer)
	return &paced{Conn: c, start: time.Now(), rate: slowRate}, nil
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// watchLead samples a connection's count and what its slow reader has read
// every 100 ms for 10 s. At every sample the count is at least what the
// reader has read (a reader cannot have bytes the proxy did not count) and
// leads it by at most 512 KiB: the count moves with the reader, within a band
// far below the kernel's buffers. The pace over the last five seconds is
// logged, not bound: counts move in steps (up to 125 KiB for plain HTTP),
// too coarse for a bound on five seconds at 50 KB/s.
func watchLead(t *testing.T, count, read func() int64) {
	t.Helper()
	type point struct {
		at          time.Time
		count, read int64
	}
	var points []point
	var maxLead int64
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
		pt := point{time.Now(), count(), read()}
		points = append(points, pt)
		maxLead = max(maxLead, pt.count-pt.read)
		if pt.count < pt.read {
			t.Errorf("at %v the count %d trails the %d bytes read", pt.at.Sub(start).Round(time.Millisecond), pt.count, pt.read)
		}
		if lead := pt.count - pt.read; lead > 512<<10 {
			t.Errorf("at %v the count %d leads the %d bytes read by %d", pt.at.Sub(start).Round(time.Millisecond), pt.count, pt.read, lead)
		}
	}
	last := points[len(points)-1]
	var from point
	for _, pt := range points {
		if last.at.Sub(pt.at) <= 5*time.Second {
			from = pt
			break
		}
	}
	dt := last.at.Sub(from.at).Seconds()
	counted, rate := float64(last.count-from.count)/dt, float64(last.read-from.read)/dt
	t.Logf("largest lead %d KiB; last %.1f s: counted %.0f B/s, read %.0f B/s", maxLead>>10, dt, counted, rate)
}

// Closing a slow reader's connection by API reaches the client at once, in
// every mode: the proxy resets its sockets, so nothing it had queued reaches
// the client after the close. The
// client still reads what its own kernel had received before the reset
// (Linux delivers a receive queue before the reset's error); its receive
// buffer is set to 16 KiB so that this takes a fraction of a second, and
// the test allows for it: the close must reach the client within a second
// plus the time to read what it already held.
func TestCloseReachesSlowReaderAtOnce(t *testing.T) {
	t.Parallel() // mostly waiting on slow readers: they run beside each other
	const rcvbuf = 16 << 10
	for _, mode := range httpModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			env := newSlowEnv(t, mode, rcvbuf)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			id, body, done := env.start(t, ctx)
			waitFor(t, "the client's buffers to fill", func() bool { return body.Load() > 100_000 })
			pc := <-env.conn
			closed, readAtClose := time.Now(), pc.read.Load()
			if got := env.p.CloseConnections(func(c proxywatch.ConnInfo) bool { return c.ID == id }); len(got) != 1 {
				t.Fatalf("closed %d connections, want 1", len(got))
			}
			select {
			case err := <-done:
				took, after := time.Since(closed), pc.read.Load()-readAtClose
				if err == nil || errors.Is(err, io.EOF) {
					t.Errorf("the client's read ended with %v, want an error", err)
				}
				// The kernel doubles SO_RCVBUF for its bookkeeping: at most
				// that much data was queued at the client.
				if after > 2*rcvbuf {
					t.Errorf("the client read %d bytes from its socket after the close, more than its %d-byte buffer held", after, 2*rcvbuf)
				}
				drain := time.Duration(float64(after) / slowRate * float64(time.Second))
				if took > time.Second+drain {
					t.Errorf("the client saw the close after %v, want within 1 s plus %v to read the %d bytes it held", took, drain, after)
				}
				t.Logf("the client saw %q %v after the close, %d bytes later", err, took.Round(time.Millisecond), after)
			case <-time.After(10 * time.Second):
				t.Fatalf("the client saw no end 10 s after the close (read %d body bytes)", body.Load())
			}
			ci := findClosed(t, env.p, func(c proxywatch.ConnInfo) bool { return c.ID == id })
			if ci.EndReason != proxywatch.EndClosedByAPI {
				t.Errorf("end reason %q, want %q", ci.EndReason, proxywatch.EndClosedByAPI)
			}
		})
	}
}
