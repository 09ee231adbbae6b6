package proxywatch_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
)

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
