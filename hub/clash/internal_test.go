package clash

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
)

// TestConnMapping pins how each kind of connection maps onto Clash's
// metadata, addresses of every form included.
func TestConnMapping(t *testing.T) {
	c := &API{}
	c.inboundIP, c.inboundPt, c.allowLAN, c.bindAddr = parseInbound("0.0.0.0:8080")
	if c.inboundIP != "" || c.inboundPt != 8080 || !c.allowLAN || c.bindAddr != "*" {
		t.Errorf("parseInbound(0.0.0.0:8080) = %q %d %v %q", c.inboundIP, c.inboundPt, c.allowLAN, c.bindAddr)
	}
	start := time.Date(2025, 2, 28, 10, 15, 30, 123456789, time.UTC)
	for _, x := range []struct {
		ci                                   proxywatch.ConnInfo
		typ, srcIP, srcPort, host, dstIP, dp string
	}{
		{proxywatch.ConnInfo{Protocol: proxywatch.ProtoHTTP, Host: "example.com:80", URL: "http://example.com/", Client: "192.168.1.20:53122"},
			"HTTP", "192.168.1.20", "53122", "example.com", "", "80"},
		{proxywatch.ConnInfo{Protocol: proxywatch.ProtoTunnel, Host: "[2001:db8::1]:443", URL: "[2001:db8::1]:443", Client: "[::1]:40000"},
			"HTTPS", "::1", "40000", "", "2001:db8::1", "443"},
		{proxywatch.ConnInfo{Protocol: proxywatch.ProtoHTTPSMITM, Host: "example.com", URL: "https://example.com/a", Client: "10.0.0.1:1", Parent: 7},
			"HTTPS-MITM", "10.0.0.1", "1", "example.com", "", "443"},
		{proxywatch.ConnInfo{Protocol: proxywatch.ProtoWebSocket, Host: "10.1.2.3:8080", URL: "http://10.1.2.3:8080/ws", Client: "10.0.0.1:2"},
			"WebSocket", "10.0.0.1", "2", "", "10.1.2.3", "8080"},
		{proxywatch.ConnInfo{Protocol: proxywatch.ProtoHTTPMITM, Host: "example.com", URL: "http://example.com/", Client: "weird"},
			"HTTP-MITM", "weird", "0", "example.com", "", "80"},
	} {
		x.ci.ID, x.ci.Start, x.ci.Up, x.ci.Down = 12, start, 5, 6
		cc := c.connFrom(x.ci)
		md := cc.Metadata
		got := []string{md.Type, md.SourceIP, md.SourcePort, md.Host, md.DestinationIP, md.DestinationPort}
		want := []string{x.typ, x.srcIP, x.srcPort, x.host, x.dstIP, x.dp}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%+v:\n got %q\nwant %q", x.ci, got, want)
		}
		if cc.ID != "12" || cc.Upload != 5 || cc.Download != 6 || md.Network != "tcp" || md.InboundPort != "8080" ||
			md.SourceGeoIP != nil || len(cc.Chains) != 1 || cc.Chains[0] != "DIRECT" || cc.Rule != "Match" {
			t.Errorf("%+v: %+v", x.ci, cc)
		}
		if (x.ci.Parent != 0) != (cc.Proxywatch.Parent == "7") {
			t.Errorf("parent %q", cc.Proxywatch.Parent)
		}
	}
}

// TestLogDrops floods a /logs client that does not read with lines
// larger than any socket buffer: what it gets afterwards, lines plus the
// counts of its "dropped" notices, adds up to exactly what was logged.
func TestLogDrops(t *testing.T) {
	p := proxywatch.New(nil)
	defer p.Close()
	c := newAPI(p, &Options{Token: "s3cret", LogQueue: 4})
	srv := httptest.NewServer(c)
	defer srv.Close()
	defer c.Close()

	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/logs?token=s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	const n, size = 1000, 64 << 10 // 64 MB in all
	big := strings.Repeat("x", size)
	for i := range n {
		c.observeLog(proxywatch.LogRecord{Seq: uint64(i + 1), Level: slog.LevelInfo, Message: strconv.Itoa(i) + " " + big})
	}
	var lines, dropped uint64
	for lines+dropped < n {
		ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("after %d lines and %d dropped: %v", lines, dropped, err)
		}
		var l logLine
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l.Payload, "proxywatch: ") {
			if l.Type != "warning" {
				t.Errorf("notice of type %q", l.Type)
			}
			k, err := strconv.ParseUint(strings.Fields(l.Payload)[1], 10, 64)
			if err != nil {
				t.Fatalf("notice %q", l.Payload)
			}
			dropped += k
			continue
		}
		lines++
	}
	if lines+dropped != n || dropped == 0 {
		t.Errorf("%d lines + %d dropped, want %d with some dropped", lines, dropped, n)
	}
}

// TestStreamEndsOnWriteTimeout checks that a streaming GET whose client
// never reads is ended by WriteWait, and its slot freed.
func TestStreamEndsOnWriteTimeout(t *testing.T) {
	p := proxywatch.New(nil)
	defer p.Close()
	c := newAPI(p, &Options{Token: "s3cret", LogQueue: 4, WriteWait: 50 * time.Millisecond})
	srv := httptest.NewServer(c)
	defer srv.Close()
	defer c.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	for c.Streams() != 1 {
		time.Sleep(time.Millisecond)
	}
	big := strings.Repeat("y", 64<<10)
	deadline := time.Now().Add(20 * time.Second)
	for c.Streams() != 0 { // keep logging until the writer gives up
		if time.Now().After(deadline) {
			t.Fatal("the stream of a client that never reads did not end")
		}
		c.observeLog(proxywatch.LogRecord{Level: slog.LevelError, Message: big})
		time.Sleep(time.Millisecond)
	}
}

// TestLogEncoding pins both line formats: goproxy's lines carry their
// arguments in the message already, the program's own records do not.
func TestLogEncoding(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 15, 30, 0, time.Local)
	gp := proxywatch.LogRecord{Time: at, Level: slog.LevelInfo, Source: "goproxy", Conn: 12,
		Message: "Accepting CONNECT to www.google.com:443", Attrs: []slog.Attr{slog.String("host", "www.google.com:443")}}
	app := proxywatch.LogRecord{Time: at, Level: slog.LevelWarn, Source: "app", Message: "quota",
		Attrs: []slog.Attr{slog.String("user", "a b"), slog.Int("n", 3), slog.String("empty", ""), slog.Any("conn", proxywatch.ConnID(7))}}
	for _, x := range []struct {
		r                 proxywatch.LogRecord
		plain, structured string
	}{
		{gp, `{"type":"info","payload":"Accepting CONNECT to www.google.com:443 conn=12"}`,
			`{"time":"10:15:30","level":"info","message":"Accepting CONNECT to www.google.com:443","fields":[{"key":"host","value":"www.google.com:443"},{"key":"conn","value":"12"}]}`},
		{app, `{"type":"warning","payload":"quota user=\"a b\" n=3 empty=\"\" conn=7"}`,
			`{"time":"10:15:30","level":"warn","message":"quota","fields":[{"key":"user","value":"a b"},{"key":"n","value":"3"},{"key":"empty","value":""},{"key":"conn","value":"7"}]}`},
	} {
		if got := string(encodePlain(x.r)); got != x.plain {
			t.Errorf("plain:\n got %s\nwant %s", got, x.plain)
		}
		if got := string(encodeStructured(x.r)); got != x.structured {
			t.Errorf("structured:\n got %s\nwant %s", got, x.structured)
		}
	}
}
