package proxywatch_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
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
	st := p.Stats()
	gu, gd := st.Up, st.Down
	if gu != up || gd != down {
		t.Errorf("Stats() totals = %d/%d, sum over connections = %d/%d", gu, gd, up, down)
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

func TestShutdownWaitsThenCloses(t *testing.T) {
	echo := echoServer(t)
	p, pu := setup(t, nil)
	c := rawConnect(t, pu, echo.Addr().String())
	defer c.Close()
	waitFor(t, "the tunnel", func() bool { return len(p.Connections()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("tunnel still open after Shutdown")
	}
	info := findClosed(t, p, func(proxywatch.ConnInfo) bool { return true })
	if info.EndReason != proxywatch.EndShutdown {
		t.Errorf("ended with %q", info.EndReason)
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
