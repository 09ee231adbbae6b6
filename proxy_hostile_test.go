package proxywatch_test

import (
	"bufio"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/proxywatch/proxywatch"
)

// loopWatch stops p if it opens more than limit connections: a request loop
// would otherwise run until the machine runs out of sockets. It reports
// whether it had to.
func loopWatch(t *testing.T, p *proxywatch.Proxy, limit uint64) (tripped func() bool) {
	var hit atomic.Bool
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			if p.Stats().Opened > limit {
				hit.Store(true)
				p.Close()
				return
			}
		}
	}()
	t.Cleanup(func() { close(done); <-stopped })
	return hit.Load
}

// TestHostileRequestsToItself sends requests through the proxy whose target
// is the proxy itself, in every mode: the proxy does not forward them to
// itself (it would forward them again, for ever, were its upstream proxy
// itself); the client gets 508 Loop Detected, or a failed CONNECT, and the
// connection ends as an upstream error that says why.
func TestHostileRequestsToItself(t *testing.T) {
	connect := func(t *testing.T, pu *url.URL, target string) int {
		c, err := net.Dial("tcp", pu.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	get := func(t *testing.T, c *http.Client, u string) int {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name string
		mitm bool
		// run makes the request to the proxy at pu and returns the status
		// the client got.
		run  func(t *testing.T, pu *url.URL, mitmRoots *x509.CertPool) int
		want int
	}{
		{"plain GET", false, func(t *testing.T, pu *url.URL, _ *x509.CertPool) int {
			return get(t, client(t, pu, nil), "http://"+pu.Host+"/")
		}, http.StatusLoopDetected},
		{"plain GET by localhost", false, func(t *testing.T, pu *url.URL, _ *x509.CertPool) int {
			return get(t, client(t, pu, nil), "http://localhost:"+pu.Port()+"/start?token=x")
		}, http.StatusLoopDetected},
		{"WebSocket upgrade", false, func(t *testing.T, pu *url.URL, _ *x509.CertPool) int {
			c, err := net.Dial("tcp", pu.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = upgradeErr(c, pu.Host, "http://"+pu.Host+"/ws")
			return statusOf(t, err)
		}, http.StatusLoopDetected},
		{"CONNECT", false, func(t *testing.T, pu *url.URL, _ *x509.CertPool) int {
			return connect(t, pu, pu.Host)
		}, http.StatusBadGateway},
		{"CONNECT by localhost", false, func(t *testing.T, pu *url.URL, _ *x509.CertPool) int {
			return connect(t, pu, "localhost:"+pu.Port())
		}, http.StatusBadGateway},
		{"GET inside a decrypted CONNECT", true, func(t *testing.T, pu *url.URL, roots *x509.CertPool) int {
			return get(t, client(t, pu, roots), "https://"+pu.Host+"/")
		}, http.StatusLoopDetected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			opts := &proxywatch.Options{}
			var roots *x509.CertPool
			if tc.mitm {
				ca, err := proxywatch.LoadOrCreateCA(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				opts.MITM = &proxywatch.MITM{CA: ca}
				roots = x509.NewCertPool()
				roots.AddCert(ca.Leaf)
			}
			p, pu := setup(t, opts)
			tripped := loopWatch(t, p, 20)
			if status := tc.run(t, pu, roots); status != tc.want {
				t.Errorf("status %d, want %d", status, tc.want)
			}
			if tripped() {
				t.Fatal("the proxy looped")
			}
			waitIdle(t, p)
			hist := p.History()
			if len(hist) != 1 || hist[0].EndReason != proxywatch.EndUpstreamError || !strings.Contains(hist[0].Err, "loops back") {
				t.Errorf("connections recorded: %+v", hist)
			}
			// The proxy still serves others.
			up := httptest.NewServer(&faultUpstream{})
			defer up.Close()
			req, _ := http.NewRequest("GET", up.URL+"/ok?n=100", nil)
			if o := do(client(t, pu, nil), req, 100); !o.complete() {
				t.Errorf("after the refusal: %v", o)
			}
		})
	}
}

// statusOf returns the status in an upgradeErr error.
func statusOf(t *testing.T, err error) int {
	t.Helper()
	var status int
	if err == nil || func() bool { _, e := fmt.Sscanf(err.Error(), "upgrade answered %d", &status); return e != nil }() {
		t.Fatalf("upgrade: %v", err)
	}
	return status
}

// TestHostileProxyChainedToItself configures the proxy's own upstream proxy
// to be itself, as HTTP_PROXY and HTTPS_PROXY do when they are set (to route
// other programs through proxywatch) in the environment proxywatch runs in:
// every request would come back to the proxy, for ever. The proxy's dial to
// itself is cut: the plain client gets 508, the CONNECT fails, and each
// request is one connection that ends as an upstream error saying why.
func TestHostileProxyChainedToItself(t *testing.T) {
	leakCheck(t)
	up := httptest.NewServer(&faultUpstream{})
	t.Cleanup(up.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := url.Parse("http://" + l.Addr().String())
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{Proxy: http.ProxyURL(self)}      // what HTTP_PROXY does
	gp.ConnectDial = gp.NewConnectDialToProxy(self.String()) // what HTTPS_PROXY does
	p := proxywatch.New(&proxywatch.Options{GoProxy: gp, SampleInterval: 50 * time.Millisecond})
	served := make(chan error, 1)
	go func() { served <- p.Serve(l) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
	})
	t.Cleanup(gp.Tr.CloseIdleConnections)
	tripped := loopWatch(t, p, 20)

	c := client(t, self, x509Pool(t, up))
	resp, err := c.Get(up.URL + "/ok?n=10")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusLoopDetected {
		t.Errorf("plain request: status %d, want 508", resp.StatusCode)
	}
	tlsUp := quietTLSServer(&faultUpstream{})
	t.Cleanup(tlsUp.Close)
	c = client(t, self, x509Pool(t, tlsUp))
	if resp, err := c.Get(tlsUp.URL + "/ok?n=10"); err == nil {
		resp.Body.Close()
		t.Error("a CONNECT through a proxy chained to itself succeeded")
	}
	if tripped() {
		t.Fatal("the proxy looped")
	}
	waitIdle(t, p)
	hist := p.History()
	for _, ci := range hist {
		if ci.EndReason != proxywatch.EndUpstreamError || !strings.Contains(ci.Err, "loops back") {
			t.Errorf("%s %s %s: %s %s", ci.Protocol, ci.Method, ci.Host, ci.EndReason, ci.Err)
		}
	}
	if len(hist) != 2 {
		t.Errorf("%d connections for two requests: %+v", len(hist), hist)
	}
}

func x509Pool(t *testing.T, s *httptest.Server) *x509.CertPool {
	t.Helper()
	if s.TLS == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return pool
}

// TestHostileCAKeyPermissions checks that a CA whose private key others may
// read or replace is refused, whatever way the access is granted, and that
// a CA made under a permissive umask still gets a private key file.
func TestHostileCAKeyPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX file modes")
	}
	good := t.TempDir()
	if _, err := proxywatch.LoadOrCreateCA(good); err != nil {
		t.Fatal(err)
	}
	cert, _ := os.ReadFile(filepath.Join(good, "ca.pem"))
	key, _ := os.ReadFile(filepath.Join(good, "ca-key.pem"))
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr string // "" means accepted
	}{
		{"key 0600", func(t *testing.T, dir string) {}, ""},
		{"key 0400", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o400) }, ""},
		{"key readable by all", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o644) }, "chmod 600"},
		{"key readable by the group", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o640) }, "chmod 600"},
		{"key writable by others", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o602) }, "chmod 600"},
		{"key executable by the group", func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o610) }, "chmod 600"},
		{"key a symlink to a readable file", func(t *testing.T, dir string) {
			other := filepath.Join(t.TempDir(), "key.pem")
			os.WriteFile(other, key, 0o644)
			os.Chmod(other, 0o644)
			os.Remove(filepath.Join(dir, "ca-key.pem"))
			os.Symlink(other, filepath.Join(dir, "ca-key.pem"))
		}, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "ca.pem"), cert, 0o644)
			os.WriteFile(filepath.Join(dir, "ca-key.pem"), key, 0o600)
			tc.prepare(t, dir)
			_, err := proxywatch.LoadOrCreateCA(dir)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err %v, want one saying %q", err, tc.wantErr)
			}
		})
	}
}

// TestHostileMalformedRequests sends requests no client should: each gets
// a 4xx (or the connection closed) and the proxy keeps serving.
func TestHostileMalformedRequests(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      int // 0: the proxy may close the connection instead
	}{
		{"garbage", "\x16\x03\x01\x00\xffhello\r\n\r\n", http.StatusBadRequest},
		{"no version", "GET http://127.0.0.1:1/\r\n\r\n", http.StatusBadRequest},
		{"header too large", "GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"CONNECT to garbage", "CONNECT ::::: HTTP/1.1\r\nHost: x\r\n\r\n", 0},
		{"two Content-Lengths", "POST http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", http.StatusBadRequest},
		{"Transfer-Encoding it does not know", "POST http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", http.StatusNotImplemented},
		{"absolute URL with no host", "GET http:/// HTTP/1.1\r\nHost: \r\n\r\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFaultEnv(t, nil)
			c, err := net.Dial("tcp", e.pu.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go io.WriteString(c, tc.raw)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			switch {
			case err == nil:
				resp.Body.Close()
				if resp.StatusCode < 400 || (tc.want != 0 && resp.StatusCode != tc.want) {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
				}
			case tc.want != 0:
				t.Errorf("no response (%v), want %d", err, tc.want)
			}
			c.Close()
			e.checkClean(t)
			if e.f.served.Load() != 0 {
				t.Error("a malformed request reached the upstream")
			}
			req, _ := http.NewRequest("GET", e.url(modePlain, "/ok?n=100", false), nil)
			if o := do(e.client(t, modePlain), req, 100); !o.complete() {
				t.Errorf("after it: %v", o)
			}
		})
	}
}
