package proxywatch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
)

// slowServer streams n chunks of size bytes, one every gap, and reports on
// cancelled when the request's context ended before it finished.
func slowServer(n, size int, gap time.Duration, cancelled chan<- struct{}) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(n*size))
		chunk := payload(size)
		for i := 0; i < n; i++ {
			if _, err := w.Write(chunk); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				if cancelled != nil {
					cancelled <- struct{}{}
				}
				return
			case <-time.After(gap):
			}
		}
	}))
}

func TestCloseConnectionEndsPlainTransfer(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	up := slowServer(100, 10_000, 50*time.Millisecond, cancelled)
	defer up.Close()
	p, pu := setup(t, nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := client(t, pu, nil).Get(up.URL)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "bytes to flow", func() bool {
		c := p.Connections()
		return len(c) == 1 && c[0].Down > 0
	})
	id := p.Connections()[0].ID
	info, ok := p.CloseConnection(id)
	if !ok || info.EndReason != proxywatch.EndClosedByAPI || info.ID != id {
		t.Fatalf("CloseConnection = %+v, %v", info, ok)
	}
	if n := len(p.Connections()); n != 0 {
		t.Errorf("%d connections still live right after CloseConnection", n)
	}
	if err := <-errc; err == nil {
		t.Error("the client finished without error: a silently truncated response")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the upstream request was not cancelled")
	}
	if _, ok := p.CloseConnection(id); ok {
		t.Error("closing twice reported success")
	}
	checkTotals(t, p)
}

func TestCloseAllEndsEveryMode(t *testing.T) {
	cancelled := make(chan struct{}, 4)
	up := slowServer(100, 10_000, 50*time.Millisecond, cancelled)
	defer up.Close()
	tlsUp := httptest.NewTLSServer(up.Config.Handler)
	defer tlsUp.Close()
	echo := echoServer(t)
	p, pu, pool := mitmSetup(t, tlsUp)
	// MITM applies to every CONNECT here, so the tunnel goes to a second
	// proxy without MITM.
	p2, pu2 := setup(t, nil)

	errs := make(chan error, 3)
	get := func(c *http.Client, u string) {
		resp, err := c.Get(u)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errs <- err
	}
	go get(client(t, pu, nil), up.URL)
	go get(client(t, pu, pool), tlsUp.URL)
	tun := rawConnect(t, pu2, echo.Addr().String())
	defer tun.Close()
	go func() {
		tun.Write([]byte("ping"))
		_, err := io.ReadAll(tun)
		if err == nil {
			err = errors.New("tunnel ended cleanly")
		}
		errs <- err
	}()
	waitFor(t, "two transfers", func() bool { return len(p.Connections()) == 2 })
	waitFor(t, "the tunnel", func() bool { return len(p2.Connections()) == 1 })
	closed := append(p.CloseAll(), p2.CloseAll()...)
	if len(closed) != 3 {
		t.Fatalf("CloseAll closed %d connections, want 3", len(closed))
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err == nil {
			t.Error("a client finished without error after CloseAll")
		}
	}
	if len(p.Connections())+len(p2.Connections()) != 0 {
		t.Error("live set not empty after CloseAll")
	}
	for _, c := range closed {
		if c.EndReason != proxywatch.EndClosedByAPI {
			t.Errorf("%s ended with %q", c.Protocol, c.EndReason)
		}
	}
	checkTotals(t, p)
	checkTotals(t, p2)
}

func TestCloseConnectionsByPredicate(t *testing.T) {
	echo := echoServer(t)
	p, pu := setup(t, nil)
	var conns []net.Conn
	for i := 0; i < 4; i++ {
		c := rawConnect(t, pu, echo.Addr().String())
		defer c.Close()
		conns = append(conns, c)
	}
	waitFor(t, "four tunnels", func() bool { return len(p.Connections()) == 4 })
	keep := p.Connections()[0].ID
	closed := p.CloseConnections(func(c proxywatch.ConnInfo) bool { return c.ID != keep })
	if len(closed) != 3 {
		t.Fatalf("closed %d, want 3", len(closed))
	}
	if live := p.Connections(); len(live) != 1 || live[0].ID != keep {
		t.Fatalf("live = %+v", live)
	}
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	if open != 1 {
		t.Errorf("%d tunnels still open on the client side, want 1", open)
	}
}

func TestFailuresEndWithReasons(t *testing.T) {
	p, pu := setup(t, nil)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()

	// Plain HTTP to a closed port: the client gets an error status, the
	// connection ends with an upstream error.
	resp, err := client(t, pu, nil).Get("http://" + deadAddr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Errorf("status %d", resp.StatusCode)
	}
	info := findClosed(t, p, func(c proxywatch.ConnInfo) bool { return c.Protocol == proxywatch.ProtoHTTP })
	if info.EndReason != proxywatch.EndUpstreamError || info.Err == "" {
		t.Errorf("plain dial failure: %+v", info)
	}

	// CONNECT to a closed port.
	c, _ := net.Dial("tcp", pu.Host)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", deadAddr, deadAddr)
	io.ReadAll(c)
	c.Close()
	info = findClosed(t, p, func(c proxywatch.ConnInfo) bool { return c.Protocol == proxywatch.ProtoTunnel })
	if info.EndReason != proxywatch.EndUpstreamError || info.Err == "" {
		t.Errorf("tunnel dial failure: %+v", info)
	}

	// An upstream that resets mid-body: the client must see an error.
	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(payload(30_000))
		w.(http.Flusher).Flush()
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}))
	defer reset.Close()
	resp, err = client(t, pu, nil).Get(reset.URL + "/reset")
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Error("the client read a truncated body without error")
	}
	info = findClosed(t, p, func(c proxywatch.ConnInfo) bool { return c.URL == reset.URL+"/reset" })
	if info.EndReason != proxywatch.EndUpstreamError {
		t.Errorf("upstream reset: %+v", info)
	}

	// A chunked upstream that breaks: net/http would end the chunked stream
	// normally; proxywatch makes the client see the failure.
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			w.Write(payload(5000))
			w.(http.Flusher).Flush()
		}
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	}))
	defer broken.Close()
	resp, err = client(t, pu, nil).Get(broken.URL + "/chunked")
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Error("the client read a truncated chunked body without error")
	}

	// A client that goes away mid-body.
	cancelled := make(chan struct{}, 1)
	slow := slowServer(100, 10_000, 30*time.Millisecond, cancelled)
	defer slow.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", slow.URL+"/abort", nil)
	resp, err = client(t, pu, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 20_000))
	cancel()
	resp.Body.Close()
	info = findClosed(t, p, func(c proxywatch.ConnInfo) bool { return c.URL == slow.URL+"/abort" })
	if info.EndReason != proxywatch.EndClientClosed {
		t.Errorf("client abort: %+v", info)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the upstream was not cancelled after the client went away")
	}
	waitIdle(t, p)
	checkTotals(t, p)
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

// TestCloseConnectionsNilMatchClosesNothing checks that a missing predicate
// is not taken for "everything": only CloseAll closes every connection.
func TestCloseConnectionsNilMatchClosesNothing(t *testing.T) {
	p, pu := setup(t, nil)
	ln := echoServer(t)
	c := rawConnect(t, pu, ln.Addr().String())
	defer c.Close()
	waitFor(t, "the tunnel", func() bool { return len(p.Connections()) == 1 })
	if closed := p.CloseConnections(nil); len(closed) != 0 {
		t.Fatalf("CloseConnections(nil) closed %d connections, want none", len(closed))
	}
	if n := len(p.Connections()); n != 1 {
		t.Fatalf("%d live connections after CloseConnections(nil), want 1", n)
	}
	if closed := p.CloseAll(); len(closed) != 1 || closed[0].EndReason != proxywatch.EndClosedByAPI {
		t.Fatalf("CloseAll closed %+v, want the tunnel, closed by API", closed)
	}
}
