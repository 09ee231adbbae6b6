package proxywatch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
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

func TestLiveProgressDuringSlowDownload(t *testing.T) {
	up := slowServer(8, 10_000, 150*time.Millisecond, nil)
	defer up.Close()
	p, pu := setup(t, nil)
	var seen []uint64
	done := make(chan error, 1)
	go func() {
		resp, err := client(t, pu, nil).Get(up.URL)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, "the download to start", func() bool { return len(p.Connections()) == 1 })
	var rate float64
	for len(p.Connections()) == 1 {
		c := p.Connections()
		if len(c) == 1 {
			seen = append(seen, c[0].Down)
			rate = max(rate, c[0].DownRate)
		}
		time.Sleep(40 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	distinct := map[uint64]bool{}
	for _, d := range seen {
		if d > 0 && d < 80_000 {
			distinct[d] = true
		}
	}
	if len(distinct) < 3 {
		t.Errorf("saw %d distinct partial counts during the download (%v); counts are not live", len(distinct), seen)
	}
	if rate <= 0 {
		t.Error("DownRate never rose above zero during the download")
	}
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

func TestIdleTimeoutClosesTunnel(t *testing.T) {
	echo := echoServer(t)
	p, pu := setup(t, &proxywatch.Options{IdleTimeout: time.Second, SampleInterval: 50 * time.Millisecond})
	c := rawConnect(t, pu, echo.Addr().String())
	defer c.Close()
	// Activity keeps it open.
	for i := 0; i < 15; i++ {
		c.Write([]byte("x"))
		c.Read(make([]byte, 1))
		time.Sleep(100 * time.Millisecond)
	}
	if len(p.Connections()) != 1 {
		t.Fatal("an active tunnel was closed")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read succeeded on an idle tunnel")
	}
	info := findClosed(t, p, func(c proxywatch.ConnInfo) bool { return true })
	if info.EndReason != proxywatch.EndIdleTimeout {
		t.Errorf("ended with %q, want idle timeout", info.EndReason)
	}
}

func TestBlockingObserverDoesNotStallTraffic(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	release := make(chan struct{})
	var calls atomic.Int64
	block := func() { calls.Add(1); <-release }
	obs := struct {
		proxywatch.TrafficObserverFunc
		proxywatch.ConnObserverFunc
		proxywatch.LogObserverFunc
	}{
		func(proxywatch.TrafficSample) { block() },
		func(proxywatch.ConnEvent) { block() },
		func(proxywatch.LogRecord) { block() },
	}
	p, pu := setup(t, &proxywatch.Options{ObserverQueue: 8})
	stop := p.Observe(obs)
	c := client(t, pu, nil)
	for i := 0; i < 200; i++ {
		resp, err := c.Get(up.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if calls.Load() == 0 {
		t.Error("the observer was never called")
	}
	if p.Stats().Dropped == 0 {
		t.Error("no event was dropped although the observer blocked")
	}
	close(release)
	stop()
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
