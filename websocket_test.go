package proxywatch_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/proxywatch/proxywatch"
)

// upgradeEcho is an upstream that answers a WebSocket upgrade with 101 and then
// echoes raw bytes until the client closes its side.
func upgradeEcho() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		io.Copy(c, brw)
	})
}

// upgrade sends a WebSocket upgrade over c and reads the 101.
func upgrade(t testing.TB, c net.Conn, target, path string) *bufio.Reader {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return br
}

func TestWebSocketPlainCountsFramesAndEnds(t *testing.T) {
	up := httptest.NewServer(upgradeEcho())
	defer up.Close()
	p, pu := setup(t, nil)
	c, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	br := upgrade(t, c, up.Listener.Addr().String(), up.URL+"/ws")
	waitFor(t, "the websocket protocol", func() bool {
		cs := p.Connections()
		return len(cs) == 1 && cs[0].Protocol == proxywatch.ProtoWebSocket
	})
	msg := payload(4321)
	c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	// The upstream ends; goproxy would leave the client hanging, proxywatch
	// closes the client side.
	if _, err := io.ReadAll(br); err != nil {
		t.Fatalf("client did not see a clean end: %v", err)
	}
	c.Close()
	info := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.Protocol == proxywatch.ProtoWebSocket })
	if info.Up != uint64(len(msg)) || info.Down != uint64(len(msg)) || info.Status != 101 {
		t.Errorf("websocket info = %+v", info)
	}
	waitIdle(t, p)
	checkTotals(t, p)
}

func TestWebSocketMITM(t *testing.T) {
	up := httptest.NewTLSServer(upgradeEcho())
	defer up.Close()
	p, pu, pool := mitmSetup(t, up)
	raw := rawConnect(t, pu, up.Listener.Addr().String())
	c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	defer c.Close()
	br := upgrade(t, c, up.Listener.Addr().String(), "/ws")
	msg := payload(999)
	c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	c.Close()
	info := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.Protocol == proxywatch.ProtoWebSocketMITM })
	if info.Up != uint64(len(msg)) || info.Down != uint64(len(msg)) || info.Parent == 0 {
		t.Errorf("websocket info = %+v", info)
	}
	waitIdle(t, p)
	checkTotals(t, p)
}
