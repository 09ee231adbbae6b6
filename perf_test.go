package proxywatch_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
)

// Tests of the behaviours proxywatch's performance relies on. Speed itself is
// measured by the benchmarks (and make bench), never asserted.

// newConnCounter returns an upstream that answers body and counts the TCP
// connections it accepted.
func newConnCounter(t *testing.T, tlsServer bool, body []byte) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if tlsServer {
		up.StartTLS()
	} else {
		up.Start()
	}
	t.Cleanup(up.Close)
	return up, &conns
}

// A client's "Connection: close" closes the client's connection only: the
// upstream connection goes back to the pool, in plain and MITM mode alike,
// and the client still gets its connection closed.
func TestClientConnectionCloseKeepsUpstreamAlive(t *testing.T) {
	body := payload(3000)
	for _, mode := range []string{"plain", "mitm"} {
		t.Run(mode, func(t *testing.T) {
			up, upConns := newConnCounter(t, mode == "mitm", body)
			pu := setupURL(t, mode, up)
			var clientConns atomic.Int64
			tr := &http.Transport{
				Proxy:             http.ProxyURL(pu.proxy),
				TLSClientConfig:   &tls.Config{RootCAs: pu.roots},
				DisableKeepAlives: true, // every request says Connection: close
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					clientConns.Add(1)
					var d net.Dialer
					return d.DialContext(ctx, network, addr)
				},
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			const n = 5
			for range n {
				resp, err := c.Get(up.URL)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || len(got) != len(body) {
					t.Fatalf("got %d bytes, %v; want %d", len(got), err, len(body))
				}
				if !resp.Close {
					t.Errorf("response to a Connection: close request does not close the client's connection")
				}
			}
			if got := clientConns.Load(); got != n {
				t.Errorf("client made %d connections for %d requests with Connection: close, want %d", got, n, n)
			}
			if got := upConns.Load(); got != 1 {
				t.Errorf("upstream accepted %d connections for %d requests, want 1 (kept alive)", got, n)
			}
			waitIdle(t, pu.p)
			for _, ci := range pu.p.History() {
				if ci.Status != http.StatusOK || ci.Down != uint64(len(body)) || ci.EndReason != proxywatch.EndCompleted {
					t.Errorf("closed connection %+v, want status 200, %d bytes down, completed", ci, len(body))
				}
			}
		})
	}
}

type proxyUnderTest struct {
	p     *proxywatch.Proxy
	proxy *url.URL
	roots *x509.CertPool
}

// setupURL starts a Proxy for mode "plain" or "mitm" (decrypting every
// CONNECT) in front of up.
func setupURL(t *testing.T, mode string, up *httptest.Server) proxyUnderTest {
	t.Helper()
	if mode == "mitm" {
		p, pu, roots := mitmSetup(t, up)
		return proxyUnderTest{p, pu, roots}
	}
	p, pu := setup(t, nil)
	return proxyUnderTest{p: p, proxy: pu}
}

// A tunnel that stays idle longer than a splice slice waits for bytes
// without a deadline (so that idle tunnels cost no CPU), and wakes up when
// bytes come: they are echoed and counted live, in both directions, and the
// totals stay exact.
func TestIdleTunnelWakesUpForBytes(t *testing.T) {
	echo := echoServer(t)
	p, pu := setup(t, nil)
	c := rawConnect(t, pu, echo.Addr().String())
	defer c.Close()
	var id proxywatch.ConnID
	waitFor(t, "the tunnel", func() bool {
		for _, ci := range p.Connections() {
			if ci.Protocol == proxywatch.ProtoTunnel {
				id = ci.ID
				return true
			}
		}
		return false
	})
	sent := 0
	roundTrip := func(n int) {
		t.Helper()
		msg := payload(n)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, n)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("echo after idling: %v", err)
		}
		sent += n
		waitFor(t, "live counts", func() bool {
			ci, ok := p.Connection(id)
			return ok && ci.Up == uint64(sent) && ci.Down == uint64(sent)
		})
	}
	roundTrip(10)
	for _, idle := range []time.Duration{600 * time.Millisecond, 50 * time.Millisecond, 900 * time.Millisecond} {
		time.Sleep(idle) // longer than a slice: both directions wait without a deadline
		roundTrip(3000)
	}
	c.Close()
	ci := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.ID == id })
	if ci.Up != uint64(sent) || ci.Down != uint64(sent) || ci.EndReason != proxywatch.EndCompleted {
		t.Errorf("closed tunnel: up %d down %d %q, want %d each, completed", ci.Up, ci.Down, ci.EndReason, sent)
	}
	checkTotals(t, p)
}

// writeCountListener counts the writes to the connections it accepts: each
// Write of a *net.TCPConn is one system call.
type writeCountListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCountListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &writeCountConn{TCPConn: c.(*net.TCPConn), writes: &l.writes}, nil
}

// writeCountConn keeps CloseWrite and CloseRead, as a *net.TCPConn has them.
type writeCountConn struct {
	*net.TCPConn
	writes *atomic.Int64
}

func (c *writeCountConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.TCPConn.Write(b)
}

// serveCountingWrites serves p on a loopback listener that counts the
// writes to its connections, until the test ends.
func serveCountingWrites(t *testing.T, p *proxywatch.Proxy) (*writeCountListener, *url.URL) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &writeCountListener{Listener: inner}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		p.Close()
		<-done
	})
	return l, &url.URL{Scheme: "http", Host: inner.Addr().String()}
}

// A small plain response leaves the proxy in one write, head and body
// together; a response that goes on reaches the client as it comes, not held
// back until more arrives or it ends.
func TestPlainResponseWrites(t *testing.T) {
	body := payload(3000)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "3000")
		if r.URL.Path == "/slow" {
			w.Write(body[:100])
			w.(http.Flusher).Flush()
			<-release // until the client saw the first 100 bytes
			w.Write(body[100:])
			return
		}
		w.Write(body)
	}))
	defer up.Close()
	p := proxywatch.New(&proxywatch.Options{SampleInterval: 50 * time.Millisecond})
	l, pu := serveCountingWrites(t, p)
	c := client(t, pu, nil)

	const n = 5
	for range n {
		resp, err := c.Get(up.URL + "/small")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != string(body) {
			t.Fatalf("got %d bytes, %v; want the %d of the body", len(got), err, len(body))
		}
	}
	if got := l.writes.Load(); got != n {
		t.Errorf("%d writes to the client for %d small responses, want %d", got, n, n)
	}

	// The head and the first 100 bytes must come while the upstream waits.
	var err error
	var resp *http.Response
	first := make([]byte, 100)
	read := make(chan error, 1)
	go func() {
		var err error
		resp, err = c.Get(up.URL + "/slow")
		if err == nil {
			_, err = io.ReadFull(resp.Body, first)
		}
		read <- err
	}()
	select {
	case err = <-read:
		close(release)
	case <-time.After(10 * time.Second):
		close(release) // the upstream goes on, so the request ends
		if <-read == nil {
			resp.Body.Close()
		}
		t.Fatal("the first bytes of a response that goes on were held back by the proxy")
	}
	if err != nil || string(first) != string(body[:100]) {
		t.Fatalf("first bytes of a response that goes on: %q, %v", first, err)
	}
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(rest) != string(body[100:]) {
		t.Fatalf("rest of the response: %d bytes, %v; want %d", len(rest), err, len(body)-100)
	}
	waitIdle(t, p)
	checkTotals(t, p)
}

// A decrypted connection is read ahead only when its request waits for the
// upstream a while (so that a fast request costs nothing to watch): requests
// pipelined behind a slow one are then read ahead and must still reach the
// upstream intact and in order, and a client that leaves a slow upstream
// still ends its request.
func TestMITMReadAheadBehindSlowUpstream(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/slow": // headers late, well after a read ahead is due
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		case "/stall":
			<-r.Context().Done()
			return
		}
		fmt.Fprintf(w, "%s %d", r.URL.Path, len(got))
	}))
	defer up.Close()
	p, pu, roots := mitmSetup(t, up)
	raw, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	target := up.Listener.Addr().String()
	fmt.Fprintf(raw, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(raw)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v, %v", resp, err)
	}
	c := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	paths := []string{"/slow", "/upload", "/last"}
	var reqs strings.Builder
	for _, path := range paths {
		body := ""
		if path == "/upload" {
			body = string(payload(5000))
		}
		fmt.Fprintf(&reqs, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", path, target, len(body), body)
	}
	if _, err := io.WriteString(c, reqs.String()); err != nil {
		t.Fatal(err)
	}
	cr := bufio.NewReader(c)
	for i, want := range []string{"/slow 0", "/upload 5000", "/last 0"} {
		resp, err := http.ReadResponse(cr, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != want {
			t.Fatalf("response %d: %q, %v; want %q", i, got, err, want)
		}
	}

	// The client leaves while its request waits for an upstream that never
	// answers: the request ends as the client's doing, and the upstream
	// request is cancelled.
	fmt.Fprintf(c, "GET /stall HTTP/1.1\r\nHost: %s\r\n\r\n", target)
	waitFor(t, "the stalled request", func() bool {
		for _, ci := range p.Connections() {
			if strings.HasSuffix(ci.URL, "/stall") {
				return true
			}
		}
		return false
	})
	c.Close()
	waitIdle(t, p)
	ci := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return strings.HasSuffix(ci.URL, "/stall") })
	if ci.EndReason != proxywatch.EndClientClosed {
		t.Errorf("a request whose client left ended with %q, want %q", ci.EndReason, proxywatch.EndClientClosed)
	}
	for _, ci := range p.History() {
		if !strings.HasSuffix(ci.URL, "/stall") && ci.EndReason != proxywatch.EndCompleted {
			t.Errorf("%s ended with %q, want completed", ci.URL, ci.EndReason)
		}
	}
}

// A small decrypted (MITM) response leaves the proxy in one write, its head
// with its body, and a small chunked one in two; a head whose body comes
// late, a HEAD response and a larger response still arrive whole, and a
// chunked response that goes on reaches the client as it comes.
func TestMITMResponseWrites(t *testing.T) {
	body := payload(3000)
	release := make(chan struct{})
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/late": // the head first, the body a while later
			w.Header().Set("Content-Length", "3000")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		case "/big":
			w.Write(payload(100_000))
			return
		case "/chunked": // no Content-Length
			w.Write(body)
			return
		case "/bigchunked": // chunks of 10 kB, flushed apart
			for i := range 10 {
				w.Write(payload(100_000)[i*10_000 : (i+1)*10_000])
				w.(http.Flusher).Flush()
			}
			return
		case "/stream": // chunked, a first chunk, then the rest when released
			w.Write(body[:100])
			w.(http.Flusher).Flush()
			<-release
			w.Write(body[100:])
			return
		}
		w.Header().Set("Content-Length", "3000")
		w.Write(body)
	}))
	defer up.Close()
	ca, err := proxywatch.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := proxywatch.New(&proxywatch.Options{
		MITM:           &proxywatch.MITM{CA: ca},
		UpstreamCAs:    []*x509.Certificate{up.Certificate()},
		SampleInterval: 50 * time.Millisecond,
	})
	l, pu := serveCountingWrites(t, p)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Leaf)
	c := client(t, pu, roots)
	get := func(method, path string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, up.URL+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(got) != want {
			t.Fatalf("%s %s: %d bytes, %v; want %d", method, path, len(got), err, want)
		}
	}
	get("GET", "/", len(body)) // the CONNECT and the handshake

	before := l.writes.Load()
	const n = 5
	for range n {
		get("GET", "/", len(body))
	}
	if got := l.writes.Load() - before; got != n {
		t.Errorf("%d writes to the client for %d small MITM responses, want %d", got, n, n)
	}
	get("GET", "/late", len(body))
	get("HEAD", "/", 0)
	get("GET", "/big", 100_000)
	before = l.writes.Load()
	get("GET", "/chunked", len(body))
	// The head, then the one chunk with the end of the body, or the end
	// apart when the upstream's came after the chunk (goproxy writes six
	// TLS records).
	if got := l.writes.Load() - before; got > 3 {
		t.Errorf("%d writes to the client for a chunked MITM response of one chunk, want 2 or 3", got)
	}
	get("GET", "/", len(body))
	resp, err := c.Get(up.URL + "/bigchunked")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, payload(100_000)) {
		t.Fatalf("chunked response of 10 kB chunks: %d bytes, %v; want the 100000 sent", len(got), err)
	}

	// A chunked response that goes on: its first chunk reaches the client
	// while the upstream waits.
	read := make(chan error, 1)
	go func() {
		resp, err := c.Get(up.URL + "/stream")
		if err == nil {
			first := make([]byte, 100)
			if _, err = io.ReadFull(resp.Body, first); err == nil && string(first) != string(body[:100]) {
				err = fmt.Errorf("first bytes %q", first)
			}
			read <- err
			if err == nil {
				var rest []byte
				rest, err = io.ReadAll(resp.Body)
				if err == nil && string(rest) != string(body[100:]) {
					err = fmt.Errorf("%d more bytes, want %d", len(rest), len(body)-100)
				}
			}
			resp.Body.Close()
		}
		read <- err
	}()
	select {
	case err := <-read:
		close(release)
		if err != nil {
			t.Fatalf("first chunk of a streamed response: %v", err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		<-read
		t.Fatal("the first chunk of a streamed MITM response was held back by the proxy")
	}
	if err := <-read; err != nil {
		t.Fatalf("rest of a streamed response: %v", err)
	}
	waitIdle(t, p)
	checkTotals(t, p)
	for _, ci := range p.History() {
		if ci.EndReason != proxywatch.EndCompleted || ci.Status != http.StatusOK {
			t.Errorf("%s %s ended %q with status %d", ci.Method, ci.URL, ci.EndReason, ci.Status)
		}
	}
}

// The default proxy passes content encoding through: a client that asks for
// gzip gets the upstream's gzip bytes (counted as they are), a client that
// does not gets the body as is; the proxy never decompresses.
func TestContentEncodingPassesThrough(t *testing.T) {
	plain := payload(20_000)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(plain)
	zw.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(zipped.Bytes())
			return
		}
		w.Write(plain)
	}))
	defer up.Close()
	p, pu := setup(t, nil)
	tr := &http.Transport{Proxy: http.ProxyURL(pu), DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for _, tc := range []struct {
		acceptEncoding, contentEncoding string
		want                            []byte
	}{
		{"gzip", "gzip", zipped.Bytes()},
		{"", "", plain},
	} {
		req, _ := http.NewRequest("GET", up.URL, nil)
		if tc.acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", tc.acceptEncoding)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, tc.want) || resp.Header.Get("Content-Encoding") != tc.contentEncoding {
			t.Errorf("Accept-Encoding %q: %d bytes with Content-Encoding %q, %v; want the %d bytes with %q",
				tc.acceptEncoding, len(got), resp.Header.Get("Content-Encoding"), err, len(tc.want), tc.contentEncoding)
		}
		waitIdle(t, p)
		h := p.History()
		if last := h[len(h)-1]; last.Down != uint64(len(tc.want)) {
			t.Errorf("Accept-Encoding %q: counted %d bytes down, want %d", tc.acceptEncoding, last.Down, len(tc.want))
		}
	}
}

// A client that connects again through a decrypting proxy resumes its TLS
// session (every CONNECT's configuration shares the proxy's ticket keys), so
// its next handshake needs no new signature.
func TestMITMSessionResumes(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	_, pu, roots := mitmSetup(t, up)
	tr := &http.Transport{
		Proxy:             http.ProxyURL(pu),
		TLSClientConfig:   &tls.Config{RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(8)},
		DisableKeepAlives: true, // a new CONNECT and handshake for each request
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for i, want := range []bool{false, true, true} {
		resp, err := c.Get(up.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.TLS == nil || resp.TLS.DidResume != want {
			t.Errorf("connection %d: resumed %v, want %v", i, resp.TLS != nil && resp.TLS.DidResume, want)
		}
	}
}

// CloseConnection of a plain request that still waits for the upstream's
// headers cancels the upstream request: proxywatch derives no context for
// plain requests, closing the client connection cancels net/http's own.
func TestCloseConnectionCancelsPendingPlainRequest(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		cancelled <- struct{}{}
	}))
	defer up.Close()
	p, pu := setup(t, nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := client(t, pu, nil).Get(up.URL)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	var id proxywatch.ConnID
	waitFor(t, "the pending request", func() bool {
		c := p.Connections()
		if len(c) == 1 {
			id = c[0].ID
		}
		return len(c) == 1
	})
	if info, ok := p.CloseConnection(id); !ok || info.EndReason != proxywatch.EndClosedByAPI {
		t.Fatalf("CloseConnection = %+v, %v", info, ok)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled")
	}
	if err := <-errc; err == nil {
		t.Error("the client got a response from a closed connection")
	}
	waitIdle(t, p)
	checkTotals(t, p)
}
