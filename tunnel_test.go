package proxywatch_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/proxywatch/proxywatch"
)

func TestTunnelCountsWireBytesAfterConnect(t *testing.T) {
	echo := echoServer(t)
	p, pu := setup(t, nil)
	c := rawConnect(t, pu, echo.Addr().String())
	msg := payload(70_000)
	go func() { _, _ = c.Write(msg); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || len(got) != len(msg) {
		t.Fatalf("echo read %d bytes, %v", len(got), err)
	}
	info := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.Protocol == proxywatch.ProtoTunnel })
	if info.Up != uint64(len(msg)) || info.Down != uint64(len(msg)) {
		t.Errorf("tunnel up/down = %d/%d, want %d/%d", info.Up, info.Down, len(msg), len(msg))
	}
	if info.Method != "CONNECT" || info.Host != echo.Addr().String() || info.EndReason != proxywatch.EndCompleted {
		t.Errorf("tunnel info = %+v", info)
	}
	waitIdle(t, p)
	checkTotals(t, p)
}

func TestTunnelTLSAgainstRealClient(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(payload(5000))
	}))
	defer up.Close()
	p, pu := setup(t, nil)
	pool := x509.NewCertPool()
	pool.AddCert(up.Certificate())

	// A real TLS client over the tunnel; countConn counts, on the client
	// side, every byte after the CONNECT reply.
	var sent, recv atomic.Int64
	raw := rawConnect(t, pu, up.Listener.Addr().String())
	tc := tls.Client(&countConn{Conn: raw, sent: &sent, recv: &recv}, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", up.Listener.Addr())
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 5000 {
		t.Fatalf("body %d bytes, %v", len(b), err)
	}
	// Read until the server's close_notify and EOF, then close.
	io.Copy(io.Discard, tc)
	tc.Close()
	info := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.Protocol == proxywatch.ProtoTunnel })
	if int64(info.Up) != sent.Load() || int64(info.Down) != recv.Load() {
		t.Errorf("tunnel up/down = %d/%d, the client sent %d and received %d through it", info.Up, info.Down, sent.Load(), recv.Load())
	}
	checkTotals(t, p)
}

// countConn counts what a client really sent and received on the wire.
type countConn struct {
	net.Conn
	sent, recv *atomic.Int64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.recv.Add(int64(n))
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(int64(n))
	return n, err
}
