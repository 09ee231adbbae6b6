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
