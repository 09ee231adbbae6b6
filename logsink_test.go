package proxywatch_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/proxywatch/proxywatch"
)

func TestLevelName(t *testing.T) {
	for _, c := range []struct {
		level slog.Level
		name  string
	}{
		{slog.LevelDebug - 4, "DEBUG"},
		{slog.LevelDebug, "DEBUG"},
		{slog.LevelDebug + 3, "DEBUG"},
		{slog.LevelInfo, "INFO"},
		{slog.LevelInfo + 2, "INFO"},
		{slog.LevelWarn, "WARN"},
		{slog.LevelError - 1, "WARN"},
		{slog.LevelError, "ERROR"},
		{slog.LevelError + 8, "ERROR"},
	} {
		if got := proxywatch.LevelName(c.level); got != c.name {
			t.Errorf("LevelName(%d) = %q, want %q", c.level, got, c.name)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for _, c := range []struct {
		in    string
		level slog.Level
		ok    bool
	}{
		{"DEBUG", slog.LevelDebug, true},
		{"info", slog.LevelInfo, true},
		{"Warn", slog.LevelWarn, true},
		{"warning", slog.LevelWarn, true},
		{"ERROR", slog.LevelError, true},
		{"", 0, false},
		{"trace", 0, false},
		{"ERROR ", 0, false},
	} {
		level, ok := proxywatch.ParseLevel(c.in)
		if level != c.level || ok != c.ok {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, %v", c.in, level, ok, c.level, c.ok)
		}
	}
	// Every name LevelName gives parses back to its level.
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		if back, ok := proxywatch.ParseLevel(proxywatch.LevelName(l)); !ok || back != l {
			t.Errorf("round trip of %v gave %v, %v", l, back, ok)
		}
	}
}

func TestMultiLogObserver(t *testing.T) {
	var got []string
	obs := func(name string) proxywatch.LogObserver {
		return proxywatch.LogObserverFunc(func(r proxywatch.LogRecord) {
			got = append(got, fmt.Sprintf("%s:%d", name, r.Seq))
		})
	}
	m := proxywatch.MultiLogObserver(obs("a"), nil, obs("b"))
	m.ObserveLog(proxywatch.LogRecord{Seq: 1})
	m.ObserveLog(proxywatch.LogRecord{Seq: 2})
	if want := "[a:1 b:1 a:2 b:2]"; fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
	proxywatch.MultiLogObserver().ObserveLog(proxywatch.LogRecord{}) // no observers: nothing happens
}

// A log observer that keeps only failures, named the way the hub puts them
// on the wire.
func ExampleLogObserverFunc() {
	failures := proxywatch.LogObserverFunc(func(r proxywatch.LogRecord) {
		if r.Level >= slog.LevelWarn {
			fmt.Printf("%s [%d] %s\n", proxywatch.LevelName(r.Level), r.Session, r.Message)
		}
	})
	failures.ObserveLog(proxywatch.LogRecord{Level: slog.LevelDebug, Session: 1, Message: "Got request / example.com GET http://example.com/"})
	failures.ObserveLog(proxywatch.LogRecord{Level: slog.LevelError, Session: 2, Message: "Error dialing to example.com:443: connection refused"})
	// Output:
	// ERROR [2] Error dialing to example.com:443: connection refused
}

func ExampleParseLevel() {
	level, ok := proxywatch.ParseLevel("warning")
	fmt.Println(level, ok, proxywatch.LevelName(level))
	// Output:
	// WARN true WARN
}

// logCollector is a LogObserver that keeps every record.
type logCollector struct {
	mu      sync.Mutex
	records []proxywatch.LogRecord
}

func (c *logCollector) ObserveLog(r proxywatch.LogRecord) {
	c.mu.Lock()
	c.records = append(c.records, r)
	c.mu.Unlock()
}

func (c *logCollector) find(substr string) (proxywatch.LogRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.records {
		if strings.Contains(r.Message, substr) {
			return r, true
		}
	}
	return proxywatch.LogRecord{}, false
}

func TestLogRecordsCarryLevelAndConnection(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	logs := &logCollector{}
	p, pu := setup(t, &proxywatch.Options{Logs: logs})

	resp, err := client(t, pu, nil).Get(up.URL + "/logged")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	plain := findClosed(t, p, func(c proxywatch.ConnInfo) bool { return strings.HasSuffix(c.URL, "/logged") })

	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	c, _ := net.Dial("tcp", pu.Host)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", deadAddr, deadAddr)
	io.ReadAll(c)
	c.Close()
	tunnel := findClosed(t, p, func(c proxywatch.ConnInfo) bool { return c.Protocol == proxywatch.ProtoTunnel })

	app := slog.New(p.SlogHandler())
	app.Warn("disk almost full", "free", "1%")

	for _, want := range []struct {
		substr string
		level  slog.Level
		conn   proxywatch.ConnID
		source string
	}{
		{"Got request /logged", slog.LevelDebug, plain.ID, "goproxy"},
		{"Error dialing to " + deadAddr, slog.LevelError, tunnel.ID, "goproxy"},
		{"disk almost full", slog.LevelWarn, 0, "app"},
	} {
		var r proxywatch.LogRecord
		waitFor(t, "log record "+want.substr, func() bool {
			var ok bool
			r, ok = logs.find(want.substr)
			return ok
		})
		if r.Level != want.level || r.Conn != want.conn || r.Source != want.source || r.Seq == 0 || r.Time.IsZero() {
			t.Errorf("record %q: level %v conn %d source %q seq %d; want level %v conn %d source %q",
				r.Message, r.Level, r.Conn, r.Source, r.Seq, want.level, want.conn, want.source)
		}
		if want.source == "goproxy" && r.Session != int64(want.conn)&0xFFFF {
			t.Errorf("record %q: session %d, want %d", r.Message, r.Session, int64(want.conn)&0xFFFF)
		}
	}
}
