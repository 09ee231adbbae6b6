package proxywatch_test

import (
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
