package proxywatch_test

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
)

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
