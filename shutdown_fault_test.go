package proxywatch_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
)

// op is one client exchange in a given mode: it returns nil when the client
// got everything it asked for, an error when it was told something went
// wrong, and errTruncated when it was told everything went well but got less.
type op func() error

var errTruncated = errors.New("silently truncated")

// httpOp fetches path?n=size in mode with c.
func (e *faultEnv) httpOp(c *http.Client, mode, path string, size int) op {
	u := e.url(mode, fmt.Sprintf("%s?n=%d", path, size), false)
	return func() error {
		req, _ := http.NewRequest("GET", u, nil)
		o := do(c, req, size)
		switch {
		case o.complete():
			return nil
		case o.err == nil && o.status == http.StatusOK:
			return fmt.Errorf("%w: %v", errTruncated, o)
		case o.err != nil:
			return o.err
		}
		return fmt.Errorf("status %d", o.status)
	}
}

// wsOp opens a WebSocket (through MITM when mitm is set), echoes size bytes
// and closes it.
func (e *faultEnv) wsOp(mitm bool, size int) op {
	msg := payload(size)
	return func() error {
		var c net.Conn
		var err error
		if mitm {
			c, err = e.tlsThroughProxy(e.mitm.Listener.Addr().String())
		} else {
			c, err = net.Dial("tcp", e.pu.Host)
		}
		if err != nil {
			return err
		}
		defer c.Close()
		path := e.plain.URL + "/ws"
		host := e.plain.Listener.Addr().String()
		if mitm {
			path, host = "/ws", e.mitm.Listener.Addr().String()
		}
		br, err := upgradeErr(c, host, path)
		if err != nil {
			return err
		}
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err = io.ReadFull(br, make([]byte, size))
		return err
	}
}

// tlsThroughProxy opens a TLS connection to target through a CONNECT.
func (e *faultEnv) tlsThroughProxy(target string) (net.Conn, error) {
	c, err := net.Dial("tcp", e.pu.Host)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	buf := make([]byte, len("HTTP/1.1 200 OK\r\n\r\n"))
	if _, err := io.ReadFull(c, buf); err != nil {
		c.Close()
		return nil, err
	}
	if string(buf) != "HTTP/1.1 200 OK\r\n\r\n" {
		c.Close()
		return nil, fmt.Errorf("CONNECT answered %q", buf)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: e.mitmRoots, ServerName: "127.0.0.1"})
	return tc, nil
}

// TestFaultCloseRacesNaturalEnds has many clients in every mode make short
// exchanges while CloseAll, CloseConnection and CloseConnections strike at
// random: each exchange completes or fails visibly, and the books balance.
func TestFaultCloseRacesNaturalEnds(t *testing.T) {
	e := newFaultEnv(t, nil)
	const workers, rounds = 16, 12
	var wg sync.WaitGroup
	var completed, failed atomic.Int64
	truncated := make(chan error, workers*rounds)
	for w := range workers {
		ops := []op{
			e.httpOp(e.client(t, modePlain), modePlain, "/ok", 30_000),
			e.httpOp(e.client(t, modeTunnel), modeTunnel, "/ok", 30_000),
			e.httpOp(e.client(t, modeMITM), modeMITM, "/ok", 30_000),
			e.wsOp(false, 5000),
			e.wsOp(true, 5000),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				err := ops[(w+i)%len(ops)]()
				switch {
				case err == nil:
					completed.Add(1)
				case errors.Is(err, errTruncated):
					truncated <- err
				default:
					failed.Add(1)
				}
			}
		}()
	}
	stop := make(chan struct{})
	closerDone := make(chan struct{})
	var byAPI atomic.Int64
	go func() {
		defer close(closerDone)
		rng := rand.New(rand.NewPCG(1, 2))
		protos := []proxywatch.Protocol{proxywatch.ProtoHTTP, proxywatch.ProtoTunnel, proxywatch.ProtoHTTPSMITM, proxywatch.ProtoWebSocket, proxywatch.ProtoWebSocketMITM}
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(rng.IntN(20_000)) * time.Microsecond):
			}
			var n int
			switch k := rng.IntN(6); {
			case k == 0:
				n = len(e.p.CloseAll())
			case k <= 3:
				if live := e.p.Connections(); len(live) > 0 {
					if _, ok := e.p.CloseConnection(live[rng.IntN(len(live))].ID); ok {
						n = 1
					}
				}
			default:
				proto := protos[rng.IntN(len(protos))]
				n = len(e.p.CloseConnections(func(c proxywatch.ConnInfo) bool { return c.Protocol == proto }))
			}
			byAPI.Add(int64(n))
		}
	}()
	wg.Wait()
	close(stop)
	<-closerDone
	close(truncated)
	for err := range truncated {
		t.Error(err)
	}
	e.checkClean(t)
	count := map[proxywatch.EndReason]int{}
	for _, c := range e.p.History() {
		count[c.EndReason]++
	}
	allowed := []proxywatch.EndReason{proxywatch.EndCompleted, proxywatch.EndClosedByAPI, proxywatch.EndClientClosed}
	for r, n := range count {
		if !slices.Contains(allowed, r) {
			t.Errorf("%d connections ended with %q", n, r)
		}
	}
	if int64(count[proxywatch.EndClosedByAPI]) != byAPI.Load() {
		t.Errorf("the close calls reported %d closed, the history says %d", byAPI.Load(), count[proxywatch.EndClosedByAPI])
	}
	if byAPI.Load() == 0 {
		t.Error("no close call ever struck a live connection: the race was not run")
	}
	st := e.p.Stats()
	t.Logf("%d exchanges: %d complete, %d failed; %d connections: %v", workers*rounds, completed.Load(), failed.Load(), st.Closed, count)
}

// inFlight starts a long transfer in every mode and returns the channel its
// clients report their outcome on (nil error: complete).
func (e *faultEnv) inFlight(t *testing.T, size int) <-chan error {
	done := make(chan error, 5)
	for _, mode := range httpModes {
		c := e.client(t, mode)
		o := e.httpOp(c, mode, "/slow", size)
		go func() { done <- o() }()
	}
	for _, mitm := range []bool{false, true} {
		// A WebSocket that streams: the client writes until it fails.
		go func() {
			var c net.Conn
			var err error
			if mitm {
				c, err = e.tlsThroughProxy(e.mitm.Listener.Addr().String())
			} else {
				c, err = net.Dial("tcp", e.pu.Host)
			}
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			path, host := e.plain.URL+"/ws", e.plain.Listener.Addr().String()
			if mitm {
				path, host = "/ws", e.mitm.Listener.Addr().String()
			}
			br, err := upgradeErr(c, host, path)
			if err != nil {
				done <- err
				return
			}
			go io.Copy(io.Discard, br)
			chunk := payload(1000)
			for {
				if _, err := c.Write(chunk); err != nil {
					done <- err
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	waitFor(t, "transfers in every mode", func() bool {
		live := e.p.Connections()
		moving := 0
		for _, c := range live {
			if c.Up+c.Down > 0 {
				moving++
			}
		}
		return len(live) == 5 && moving == 5
	})
	return done
}

// TestFaultShutdownInFlight shuts the proxy down while transfers run in
// every mode, with Shutdown's deadline passing, with Close, and with
// transfers short enough for a graceful Shutdown.
func TestFaultShutdownInFlight(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stop     func(p *proxywatch.Proxy) error
		wantErr  error
		complete bool // the transfers complete
	}{
		{
			name: "Shutdown whose deadline passes",
			stop: func(p *proxywatch.Proxy) error {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancel()
				return p.Shutdown(ctx)
			},
			wantErr: context.DeadlineExceeded,
		},
		{
			name: "Close",
			stop: func(p *proxywatch.Proxy) error { return p.Close() },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFaultEnv(t, nil)
			done := e.inFlight(t, 5_000_000) // 500 slices of 20 ms: longer than any test
			if err := tc.stop(e.p); !errors.Is(err, tc.wantErr) {
				t.Errorf("stop returned %v, want %v", err, tc.wantErr)
			}
			if live := e.p.Connections(); len(live) != 0 {
				t.Errorf("%d connections live after the proxy stopped", len(live))
			}
			for range 5 {
				if err := <-done; err == nil || errors.Is(err, errTruncated) {
					t.Errorf("a client of a cut transfer saw %v", err)
				}
			}
			e.checkClean(t)
			for _, c := range e.p.History() {
				if c.EndReason != proxywatch.EndShutdown {
					t.Errorf("%s connection %d ended with %q, want shutdown", c.Protocol, c.ID, c.EndReason)
				}
			}
			if c, err := net.Dial("tcp", e.pu.Host); err == nil {
				c.Close()
				t.Error("the proxy still accepts connections")
			}
		})
	}

	t.Run("graceful Shutdown", func(t *testing.T) {
		e := newFaultEnv(t, nil)
		results := make(chan error, 3)
		for _, mode := range httpModes {
			c := e.client(t, mode)
			// Each client's connection ends with its response, so that a
			// tunnel ends too (a kept-alive tunnel is live until its client
			// closes it, and Shutdown waits for it).
			tr := c.Transport.(*http.Transport)
			tr.DisableKeepAlives = true
			// The client closes as a finished client on a real network does:
			// it says it is done and reads what is still on its way. Closed
			// with that unread (an HTTPS server's close_notify, here), its
			// kernel resets the tunnel, which is the client closing first.
			tr.DialContext = politeDial
			o := e.httpOp(c, mode, "/slow", 400_000) // 40 slices of 20 ms
			go func() { results <- o() }()
		}
		waitFor(t, "three transfers", func() bool { return len(e.p.Connections()) == 3 })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown = %v", err)
		}
		for range 3 {
			if err := <-results; err != nil {
				t.Errorf("a transfer did not complete: %v", err)
			}
		}
		e.checkClean(t)
		for _, c := range e.p.History() {
			if c.EndReason != proxywatch.EndCompleted {
				t.Errorf("%s connection %d ended with %q (%s), want completed", c.Protocol, c.ID, c.EndReason, c.Err)
			}
		}
	})
}

// upgradeErr is upgrade for goroutines: it returns the error instead of
// failing the test.
func upgradeErr(c net.Conn, target, path string) (*bufio.Reader, error) {
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("upgrade answered %d", resp.StatusCode)
	}
	return br, nil
}

// TestFaultCloseRacesServe closes (or shuts down) a Proxy while its Serve is
// starting, again and again: Serve must always return http.ErrServerClosed,
// and never leave a server running that nobody can stop.
func TestFaultCloseRacesServe(t *testing.T) {
	leakCheck(t)
	for i := range 200 {
		p := proxywatch.New(nil)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- p.Serve(l) }()
		if i%2 == 0 {
			p.Close()
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			p.Shutdown(ctx)
			cancel()
		}
		select {
		case err := <-served:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("round %d: Serve = %v, want http.ErrServerClosed", i, err)
			}
		case <-time.After(10 * time.Second):
			l.Close()
			t.Fatalf("round %d: Serve still running after the Proxy was closed", i)
		}
	}
}

// politeDial dials like net.Dialer and returns a connection whose Close
// half-closes, reads until the peer's end (bounded by a deadline) and then
// closes, so that nothing in flight towards it is refused with a reset.
func politeDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &politeConn{c.(*net.TCPConn)}, nil
}

type politeConn struct{ *net.TCPConn }

func (c *politeConn) Close() error {
	_ = c.CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, c.TCPConn)
	return c.TCPConn.Close()
}
