package proxywatch_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// setup starts a Proxy on a loopback listener and returns it with its URL.
// Everything is closed when the test ends.
func setup(t testing.TB, opts *proxywatch.Options) (*proxywatch.Proxy, *url.URL) {
	t.Helper()
	if opts == nil {
		opts = &proxywatch.Options{}
	}
	if opts.SampleInterval == 0 {
		opts.SampleInterval = 50 * time.Millisecond
	}
	p := proxywatch.New(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		_ = p.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	u, _ := url.Parse("http://" + l.Addr().String())
	return p, u
}

// client returns an http.Client that uses the proxy, trusting roots for TLS.
func client(t testing.TB, proxy *url.URL, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{
		Proxy:           http.ProxyURL(proxy),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitIdle waits until the live set is empty.
func waitIdle(t testing.TB, p *proxywatch.Proxy) {
	t.Helper()
	waitFor(t, "the live set to empty", func() bool { return len(p.Connections()) == 0 })
}

// checkTotals asserts that the global totals equal the sum over the closed
// history (the live set being empty).
func checkTotals(t testing.TB, p *proxywatch.Proxy) {
	t.Helper()
	var up, down uint64
	for _, c := range p.History() {
		up += c.Up
		down += c.Down
	}
	for _, c := range p.Connections() {
		up += c.Up
		down += c.Down
	}
	gu, gd := p.Totals()
	if gu != up || gd != down {
		t.Errorf("Totals() = %d/%d, sum over connections = %d/%d", gu, gd, up, down)
	}
}

func findClosed(t testing.TB, p *proxywatch.Proxy, pred func(proxywatch.ConnInfo) bool) proxywatch.ConnInfo {
	t.Helper()
	var found proxywatch.ConnInfo
	waitFor(t, "a closed connection", func() bool {
		for _, c := range p.History() {
			if pred(c) {
				found = c
				return true
			}
		}
		return false
	})
	return found
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func TestPlainHTTPCountsBodiesExactly(t *testing.T) {
	body := payload(100_000)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Got", fmt.Sprint(n))
		if r.URL.Path == "/chunked" {
			// No Content-Length: chunked on the wire.
			for i := 0; i < 10; i++ {
				_, _ = w.Write(body[i*1000 : (i+1)*1000])
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = w.Write(body)
	}))
	defer up.Close()
	p, pu := setup(t, nil)
	c := client(t, pu, nil)

	// Three requests over one keep-alive connection: three connections.
	for i, tc := range []struct {
		method, path string
		send         int
		want         int
	}{
		{"GET", "/", 0, len(body)},
		{"POST", "/upload", 12345, len(body)},
		{"GET", "/chunked", 0, 10000},
	} {
		req, _ := http.NewRequest(tc.method, up.URL+tc.path, strings.NewReader(string(payload(tc.send))))
		if tc.send == 0 {
			req.Body = nil
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(got) != tc.want {
			t.Fatalf("request %d: read %d bytes, err %v; want %d", i, len(got), err, tc.want)
		}
		if tc.path != "/chunked" && resp.ContentLength != int64(tc.want) {
			t.Errorf("request %d: Content-Length %d, want %d (counting must not re-chunk)", i, resp.ContentLength, tc.want)
		}
		info := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.URL == up.URL+tc.path })
		if info.Up != uint64(tc.send) || info.Down != uint64(tc.want) {
			t.Errorf("%s %s: up/down = %d/%d, want %d/%d", tc.method, tc.path, info.Up, info.Down, tc.send, tc.want)
		}
		if info.Protocol != proxywatch.ProtoHTTP || info.Status != 200 || info.EndReason != proxywatch.EndCompleted || info.Method != tc.method {
			t.Errorf("closed info = %+v", info)
		}
	}
	waitIdle(t, p)
	checkTotals(t, p)
	if s := p.Stats(); s.Opened != 3 || s.Closed != 3 {
		t.Errorf("Stats = %+v, want 3 opened and closed", s)
	}
}

// rawConnect opens a tunnel through the proxy by hand and returns the
// connection right after the proxy's reply, so the test knows exactly which
// bytes it sends and receives through the tunnel.
func rawConnect(t testing.TB, proxy *url.URL, target string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", proxy.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	if br.Buffered() != 0 {
		t.Fatal("bytes after the CONNECT reply")
	}
	return c
}

// echoServer accepts TCP connections and echoes them until EOF.
func echoServer(t testing.TB) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l
}

func TestTunnelCountsWireBytesAfterConnect(t *testing.T) {
	echo := echoServer(t)
	p, pu := setup(t, nil)
	c := rawConnect(t, pu, echo.Addr().String())
	msg := payload(70_000)
	go func() { _, _ = c.Write(msg); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || len(got) != len(msg) {
		t.Fatalf("echo read %d bytes, %v", len(got), err)
	}
	info := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.Protocol == proxywatch.ProtoTunnel })
	if info.Up != uint64(len(msg)) || info.Down != uint64(len(msg)) {
		t.Errorf("tunnel up/down = %d/%d, want %d/%d", info.Up, info.Down, len(msg), len(msg))
	}
	if info.Method != "CONNECT" || info.Host != echo.Addr().String() || info.EndReason != proxywatch.EndCompleted {
		t.Errorf("tunnel info = %+v", info)
	}
	waitIdle(t, p)
	checkTotals(t, p)
}

func TestTunnelTLSAgainstRealClient(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(payload(5000))
	}))
	defer up.Close()
	p, pu := setup(t, nil)
	pool := x509.NewCertPool()
	pool.AddCert(up.Certificate())

	// A real TLS client over the tunnel; countConn counts, on the client
	// side, every byte after the CONNECT reply.
	var sent, recv atomic.Int64
	raw := rawConnect(t, pu, up.Listener.Addr().String())
	tc := tls.Client(&countConn{Conn: raw, sent: &sent, recv: &recv}, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", up.Listener.Addr())
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 5000 {
		t.Fatalf("body %d bytes, %v", len(b), err)
	}
	// Read until the server's close_notify and EOF, then close.
	io.Copy(io.Discard, tc)
	tc.Close()
	info := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.Protocol == proxywatch.ProtoTunnel })
	if int64(info.Up) != sent.Load() || int64(info.Down) != recv.Load() {
		t.Errorf("tunnel up/down = %d/%d, the client sent %d and received %d through it", info.Up, info.Down, sent.Load(), recv.Load())
	}
	checkTotals(t, p)
}

// countConn counts what a client really sent and received on the wire.
type countConn struct {
	net.Conn
	sent, recv *atomic.Int64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.recv.Add(int64(n))
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(int64(n))
	return n, err
}
