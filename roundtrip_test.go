package proxywatch_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/proxywatch/proxywatch"
)

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
