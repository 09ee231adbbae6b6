package proxywatch

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/elazarl/goproxy"
	"go.uber.org/goleak"
)

// recorder collects the records a sink emits.
type recorder struct {
	mu      sync.Mutex
	recs    []LogRecord
	changed chan struct{} // signalled (without blocking) after every record
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) emit(rec LogRecord) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) all() []LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

func (r *recorder) last(t *testing.T) LogRecord {
	t.Helper()
	recs := r.all()
	if len(recs) == 0 {
		t.Fatal("no record emitted")
	}
	return recs[len(recs)-1]
}

// waitFor returns the first record matching ok, waiting for it to be emitted.
// The deadline only turns a hang into a failure; nothing is timed.
func (r *recorder) waitFor(t *testing.T, what string, ok func(LogRecord) bool) LogRecord {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		for _, rec := range r.all() {
			if ok(rec) {
				return rec
			}
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("no record %s; got:\n%s", what, dump(r.all()))
		}
	}
}

func dump(recs []LogRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  #%d %s %s [%d] conn=%d %q %v\n", r.Seq, LevelName(r.Level), r.Source, r.Session, r.Conn, r.Message, r.Attrs)
	}
	return b.String()
}

// attrMap returns a record's attrs as key -> formatted value.
func attrMap(r LogRecord) map[string]string {
	m := make(map[string]string, len(r.Attrs))
	for _, a := range r.Attrs {
		m[a.Key] = a.Value.String()
	}
	return m
}

// checkAttrs fails unless r's attrs are exactly want.
func checkAttrs(t *testing.T, r LogRecord, want map[string]string) {
	t.Helper()
	got := attrMap(r)
	if len(got) != len(r.Attrs) {
		t.Errorf("%q: duplicate attr keys: %v", r.Message, r.Attrs)
	}
	if len(got) != len(want) {
		t.Errorf("%q: attrs %v, want %v", r.Message, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q: attr %s = %q, want %q (all: %v)", r.Message, k, got[k], v, got)
		}
	}
}

// logGP logs as goproxy's ctx.Logf ("INFO") and ctx.Warnf ("WARN") do.
func logGP(sink *logSink, session int64, tag, template string, args ...any) {
	format, all := gpLine(session, tag, template, args...)
	sink.Printf(format, all...)
}

// gpLine is one goproxy log call as goproxy makes it (ctx.printf).
func gpLine(session int64, tag, template string, args ...any) (string, []any) {
	return "[%03d] " + tag + ": " + template + "\n", append([]any{session & 0xFFFF}, args...)
}

// templateCase is one goproxy template as goproxy calls the Logger with it.
type templateCase struct {
	tag, template string
	args          []any
	level         slog.Level
	message       string
	attrs         map[string]string
}

var errTest = errors.New("boom: connection reset by peer")

// goproxyCases covers every row of goproxyLines, plus the run-time built
// line, with the arguments goproxy passes.
var goproxyCases = []templateCase{
	{"INFO", "Got request %v %v %v %v", []any{"/p", "example.com", "GET", "http://example.com/p"}, slog.LevelDebug,
		"Got request /p example.com GET http://example.com/p",
		map[string]string{"path": "/p", "host": "example.com", "method": "GET", "url": "http://example.com/p"}},
	{"INFO", "Sending request %v %v", []any{"POST", "http://example.com/x"}, slog.LevelDebug,
		"Sending request POST http://example.com/x", map[string]string{"method": "POST", "url": "http://example.com/x"}},
	{"INFO", "Copying response to client %v [%d]", []any{"404 Not Found", 404}, slog.LevelDebug,
		"Copying response to client 404 Not Found [404]", map[string]string{"status_text": "404 Not Found", "status": "404"}},
	{"INFO", "Running %d CONNECT handlers", []any{2}, slog.LevelDebug, "Running 2 CONNECT handlers", map[string]string{"handlers": "2"}},
	{"INFO", "on %dth handler: %v %s", []any{0, &goproxy.ConnectAction{Action: goproxy.ConnectMitm}, "example.com:443"}, slog.LevelDebug,
		"on 0th handler: &{2 <nil> <nil>} example.com:443",
		map[string]string{"handler": "0", "action": "&{2 <nil> <nil>}", "host": "example.com:443"}},
	{"INFO", "req %v", []any{"example.com:443"}, slog.LevelDebug, "req example.com:443", map[string]string{"host": "example.com:443"}},
	{"INFO", "resp %v", []any{"200 OK"}, slog.LevelDebug, "resp 200 OK", map[string]string{"status_text": "200 OK"}},
	{"INFO", "signing for %s", []any{"example.com"}, slog.LevelDebug, "signing for example.com", map[string]string{"host": "example.com"}},
	{"INFO", "Exiting on EOF", nil, slog.LevelDebug, "Exiting on EOF", map[string]string{}},
	{"INFO", "Copied %v bytes to client error=%v", []any{int64(5000), nil}, slog.LevelDebug,
		"Copied 5000 bytes to client error=<nil>", map[string]string{"bytes": "5000"}},
	{"INFO", "Copied %v bytes to client error=%v", []any{int64(12), errTest}, slog.LevelWarn,
		"Copied 12 bytes to client error=boom: connection reset by peer", map[string]string{"bytes": "12", "error": errTest.Error()}},
	{"INFO", "Accepting CONNECT to %s", []any{"example.com:443"}, slog.LevelInfo, "Accepting CONNECT to example.com:443", map[string]string{"host": "example.com:443"}},
	{"INFO", "Received CONNECT request, mitm proxying it", nil, slog.LevelInfo, "Received CONNECT request, mitm proxying it", map[string]string{}},
	{"INFO", "ALPN negotiated h2, starting http2.ServeConn", nil, slog.LevelInfo, "ALPN negotiated h2, starting http2.ServeConn", map[string]string{}},
	{"INFO", "Response looks like websocket upgrade.", nil, slog.LevelInfo, "Response looks like websocket upgrade.", map[string]string{}},
	{"INFO", "error read response example.com:80 : dial tcp 127.0.0.1:1: connect: connection refused", nil, slog.LevelError,
		"error read response example.com:80 : dial tcp 127.0.0.1:1: connect: connection refused",
		map[string]string{"host": "example.com:80", "error": "dial tcp 127.0.0.1:1: connect: connection refused"}},
	{"INFO", "error read response example.com:80 : bad %d percent %s", nil, slog.LevelError,
		"error read response example.com:80 : bad %d percent %s", map[string]string{"host": "example.com:80", "error": "bad %d percent %s"}},
	{"INFO", "error read response example.com:80", nil, slog.LevelError, "error read response example.com:80", map[string]string{"host": "example.com:80"}},

	{"WARN", "Error dialing to %s: %s", []any{"example.com:443", "dial tcp: refused"}, slog.LevelError,
		"Error dialing to example.com:443: dial tcp: refused", map[string]string{"host": "example.com:443", "error": "dial tcp: refused"}},
	{"WARN", "Cannot read response from mitm'd server %v", []any{errTest}, slog.LevelError,
		"Cannot read response from mitm'd server " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "HTTP/2 MITM: upstream RoundTrip failed: %v", []any{errTest}, slog.LevelError,
		"HTTP/2 MITM: upstream RoundTrip failed: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "HTTP/2 MITM: error reading response body: %v", []any{errTest}, slog.LevelError,
		"HTTP/2 MITM: error reading response body: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Cannot read response %s", []any{errTest}, slog.LevelError, "Cannot read response " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Cannot sign host certificate with provided CA: %s", []any{errTest}, slog.LevelError,
		"Cannot sign host certificate with provided CA: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Unable to use Websocket connection", nil, slog.LevelError, "Unable to use Websocket connection", map[string]string{}},
	{"WARN", "Hijack error: %v", []any{http.ErrHijacked}, slog.LevelError, "Hijack error: " + http.ErrHijacked.Error(), map[string]string{"error": http.ErrHijacked.Error()}},
	{"WARN", "Cannot hijack connection: %v", []any{http.ErrHijacked}, slog.LevelError,
		"Cannot hijack connection: " + http.ErrHijacked.Error(), map[string]string{"error": http.ErrHijacked.Error()}},
	{"WARN", "ConnectProxyAuthHijack is not supported when the proxy is served over HTTP/2", nil, slog.LevelError,
		"ConnectProxyAuthHijack is not supported when the proxy is served over HTTP/2", map[string]string{}},
	{"WARN", "CONNECT: server does not support hijacking and request is not HTTP/2 (proto=%s)", []any{"HTTP/1.0"}, slog.LevelError,
		"CONNECT: server does not support hijacking and request is not HTTP/2 (proto=HTTP/1.0)", map[string]string{"proto": "HTTP/1.0"}},

	{"WARN", "Cannot handshake client %v %v", []any{"example.com:443", errTest}, slog.LevelWarn,
		"Cannot handshake client example.com:443 " + errTest.Error(), map[string]string{"host": "example.com:443", "error": errTest.Error()}},
	{"WARN", "Cannot read request from mitm'd client %v %v", []any{"example.com:443", errTest}, slog.LevelWarn,
		"Cannot read request from mitm'd client example.com:443 " + errTest.Error(), map[string]string{"host": "example.com:443", "error": errTest.Error()}},
	{"WARN", "Cannot parse URL %s: %v", []any{"https://ex ample", errTest}, slog.LevelWarn,
		"Cannot parse URL https://ex ample: " + errTest.Error(), map[string]string{"url": "https://ex ample", "error": errTest.Error()}},
	{"WARN", "Illegal URL %s", []any{"https://example.com/p"}, slog.LevelWarn, "Illegal URL https://example.com/p", map[string]string{"url": "https://example.com/p"}},
	{"WARN", "Cannot write response header from mitm'd client: %v", []any{errTest}, slog.LevelWarn,
		"Cannot write response header from mitm'd client: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Cannot flush response header from mitm'd client: %v", []any{errTest}, slog.LevelWarn,
		"Cannot flush response header from mitm'd client: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Cannot write response from mitm'd client: %v", []any{errTest}, slog.LevelWarn,
		"Cannot write response from mitm'd client: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Cannot write response that reject http CONNECT: %v", []any{errTest}, slog.LevelWarn,
		"Cannot write response that reject http CONNECT: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Error responding to client: %s", []any{errTest}, slog.LevelWarn, "Error responding to client: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Error closing client connection: %s", []any{errTest}, slog.LevelWarn,
		"Error closing client connection: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Error copying to client: %s", []any{errTest.Error()}, slog.LevelWarn, "Error copying to client: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "HTTP/2 MITM: error writing response body: %v", []any{errTest}, slog.LevelWarn,
		"HTTP/2 MITM: error writing response body: " + errTest.Error(), map[string]string{"error": errTest.Error()}},
	{"WARN", "Can't close response body %v", []any{errTest}, slog.LevelWarn, "Can't close response body " + errTest.Error(), map[string]string{"error": errTest.Error()}},

	// A handler's own lines (templates goproxy does not emit) keep goproxy's level.
	{"INFO", "my handler saw %s with %d headers", []any{"example.com", 7}, slog.LevelInfo,
		"my handler saw example.com with 7 headers", map[string]string{"arg1": "example.com", "arg2": "7"}},
	{"WARN", "my handler refused %s", []any{"example.com"}, slog.LevelWarn, "my handler refused example.com", map[string]string{"arg1": "example.com"}},
}

func TestLogSinkEveryGoproxyTemplate(t *testing.T) {
	rec := newRecorder()
	var resolved []int64
	sink := newLogSink(nil, func(s int64) ConnID { resolved = append(resolved, s); return ConnID(s + 100000) }, rec.emit)
	covered := map[string]bool{}
	for i, c := range goproxyCases {
		session := int64(65536 + i + 1) // goproxy masks: this prints as i+1
		logGP(sink, session, c.tag, c.template, c.args...)
		r := rec.last(t)
		covered[c.tag+": "+c.template] = true
		if r.Seq != uint64(i+1) || sink.accepted() != uint64(i+1) {
			t.Errorf("%q: Seq %d, accepted %d, want %d", c.template, r.Seq, sink.accepted(), i+1)
		}
		if r.Level != c.level {
			t.Errorf("%q: level %s, want %s", c.template, LevelName(r.Level), LevelName(c.level))
		}
		if r.Message != c.message {
			t.Errorf("%q: message %q, want %q", c.template, r.Message, c.message)
		}
		if r.Source != "goproxy" || r.Session != int64(i+1) || r.Conn != ConnID(i+1+100000) || r.Time.IsZero() {
			t.Errorf("%q: source %q session %d conn %d time %v", c.template, r.Source, r.Session, r.Conn, r.Time)
		}
		checkAttrs(t, r, c.attrs)
	}
	if len(resolved) != len(goproxyCases) {
		t.Errorf("resolve called %d times, want %d", len(resolved), len(goproxyCases))
	}
	for key := range goproxyLines {
		if !covered[key] {
			t.Errorf("table entry %q has no test case", key)
		}
	}
}

// TestGoproxyLinesMatchGoproxySource reads the goproxy source this module
// builds with and checks that every template it logs is in goproxyLines, so
// that a goproxy upgrade adding or rewording a line fails here.
func TestGoproxyLinesMatchGoproxySource(t *testing.T) {
	goTool := filepath.Join(build.Default.GOROOT, "bin", "go")
	out, err := exec.Command(goTool, "list", "-m", "-f", "{{.Dir}}", "github.com/elazarl/goproxy").Output()
	if err != nil {
		t.Fatalf("locating goproxy's source: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no goproxy source in %q: %v", dir, err)
	}
	found := map[string]bool{}
	nonConstant := 0
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Logf" && sel.Sel.Name != "Warnf") {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "ctx" {
				return true
			}
			tag := "INFO: "
			if sel.Sel.Name == "Warnf" {
				tag = "WARN: "
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok {
				nonConstant++
				t.Logf("non-constant %s at %s", sel.Sel.Name, fset.Position(call.Pos()))
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			found[tag+s] = true
			return true
		})
	}
	for key := range found {
		if _, ok := goproxyLines[key]; !ok {
			t.Errorf("goproxy logs %q, which goproxyLines lacks", key)
		}
	}
	for key := range goproxyLines {
		if !found[key] {
			t.Errorf("goproxyLines has %q, which goproxy does not log", key)
		}
	}
	// The two "error read response" lines in http.go, handled by prefix.
	if nonConstant != 2 {
		t.Errorf("goproxy has %d non-constant log formats, want the 2 of handleHttp", nonConstant)
	}
}

func TestLogSinkSessionAndConn(t *testing.T) {
	rec := newRecorder()
	live := map[int64]ConnID{7: 65543, 9: 9}
	var calls []int64
	level := new(slog.LevelVar)
	level.Set(slog.LevelInfo)
	sink := newLogSink(level, func(s int64) ConnID { calls = append(calls, s); return live[s] }, rec.emit)

	logGP(sink, 65543, "INFO", "Accepting CONNECT to %s", "a:443") // masked to 7
	if r := rec.last(t); r.Session != 7 || r.Conn != 65543 {
		t.Errorf("session %d conn %d, want 7 and 65543", r.Session, r.Conn)
	}
	logGP(sink, 8, "WARN", "Error dialing to %s: %s", "b:443", "refused") // not live
	if r := rec.last(t); r.Session != 8 || r.Conn != 0 {
		t.Errorf("session %d conn %d, want 8 and 0", r.Session, r.Conn)
	}
	logGP(sink, 9, "INFO", "Got request %v %v %v %v", "/", "h", "GET", "http://h/") // DEBUG: filtered
	sink.Printf("plain text with no session\n")
	if r := rec.last(t); r.Session != 0 || r.Conn != 0 || r.Message != "plain text with no session" || r.Level != slog.LevelInfo {
		t.Errorf("unshaped line: %+v", r)
	}
	if want := []int64{7, 8}; !slices.Equal(calls, want) {
		t.Errorf("resolve called with %v, want %v (only for accepted records with a session)", calls, want)
	}
	if n := sink.accepted(); n != 3 {
		t.Errorf("accepted %d, want 3", n)
	}

	// A nil resolve and a nil emit are allowed.
	quiet := newLogSink(nil, nil, nil)
	logGP(quiet, 1, "INFO", "req %v", "h")
	if quiet.accepted() != 1 {
		t.Errorf("accepted %d, want 1", quiet.accepted())
	}
}

func TestLogSinkLevelIsReadOnEveryCall(t *testing.T) {
	rec := newRecorder()
	level := new(slog.LevelVar)
	sink := newLogSink(level, nil, rec.emit)
	format, args := gpLine(3, "INFO", "Sending request %v %v", "GET", "http://h/")
	for _, tc := range []struct {
		level slog.Level
		want  int
	}{{slog.LevelDebug, 1}, {slog.LevelInfo, 1}, {slog.LevelDebug, 2}, {slog.LevelError, 2}} {
		level.Set(tc.level)
		sink.Printf(format, args...)
		if n := len(rec.all()); n != tc.want {
			t.Errorf("at %s: %d records, want %d", tc.level, n, tc.want)
		}
	}
	// Below the threshold nothing is formatted or allocated.
	level.Set(slog.LevelWarn)
	copied, copiedArgs := gpLine(3, "INFO", "Copied %v bytes to client error=%v", int64(10), nil)
	for _, line := range [][]any{append([]any{format}, args...), append([]any{copied}, copiedArgs...)} {
		f, a := line[0].(string), line[1:]
		if n := testing.AllocsPerRun(100, func() { sink.Printf(f, a...) }); n != 0 {
			t.Errorf("filtered %q: %v allocs per call, want 0", f, n)
		}
	}
	if n := len(rec.all()); n != 2 {
		t.Errorf("filtered lines were emitted: %d records", n)
	}
}

func TestLogSinkUnknownShapes(t *testing.T) {
	rec := newRecorder()
	sink := newLogSink(nil, func(int64) ConnID { return 1 }, rec.emit)
	for _, c := range []struct {
		format  string
		args    []any
		level   slog.Level
		session int64
		message string
		attrs   map[string]string
	}{
		{"  hello %s world\n\n", []any{"big"}, slog.LevelInfo, 0, "hello big world", map[string]string{"arg1": "big"}},
		{"[%03d] INFO: x %d\n", []any{3, 4}, slog.LevelInfo, 0, "[003] INFO: x 4", map[string]string{"arg1": "3", "arg2": "4"}}, // int, not int64
		{"[%03d] INFO: x\n", nil, slog.LevelInfo, 0, "[%!d(MISSING)] INFO: x", map[string]string{}},
		{"[%03d] DEBUG: custom %v\n", []any{int64(5), true}, slog.LevelInfo, 5, "DEBUG: custom true", map[string]string{"arg1": "true"}},
		{"[%03d] WARN: no newline %v", []any{int64(6), 1.5}, slog.LevelWarn, 6, "no newline 1.5", map[string]string{"arg1": "1.5"}},
		{"[%03d] WARN: Error dialing to %s: %s\n", []any{int64(6), "h:1"}, slog.LevelError, 6, "Error dialing to h:1: %!s(MISSING)", map[string]string{"host": "h:1"}},
		{"[%03d] INFO: req %v\n", []any{int64(6), "h", "extra"}, slog.LevelDebug, 6, "req h%!(EXTRA string=extra)", map[string]string{"host": "h", "arg2": "extra"}},
		{"%v %v", []any{nil, ConnID(4)}, slog.LevelInfo, 0, "<nil> 4", map[string]string{"arg2": "4"}},
	} {
		sink.Printf(c.format, c.args...)
		r := rec.last(t)
		if r.Level != c.level || r.Session != c.session || r.Message != c.message {
			t.Errorf("Printf(%q, %v): level %s session %d message %q; want %s %d %q",
				c.format, c.args, LevelName(r.Level), r.Session, r.Message, LevelName(c.level), c.session, c.message)
		}
		if (r.Session != 0) != (r.Conn != 0) {
			t.Errorf("Printf(%q): session %d but conn %d", c.format, r.Session, r.Conn)
		}
		checkAttrs(t, r, c.attrs)
	}
}

// stringer is an argument that changes after it is logged.
type stringer struct{ s *string }

func (s stringer) String() string { return *s.s }

func TestLogSinkAttrsOwnTheirValues(t *testing.T) {
	rec := newRecorder()
	sink := newLogSink(nil, nil, rec.emit)
	text := "before"
	when := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	sink.Printf("%v %v %v %v %v %v", stringer{&text}, errTest, uint16(3), time.Second, when, []string{"a"})
	text = "after"
	r := rec.last(t)
	kinds := []slog.Kind{slog.KindString, slog.KindString, slog.KindUint64, slog.KindDuration, slog.KindTime, slog.KindString}
	for i, a := range r.Attrs {
		if a.Value.Kind() != kinds[i] {
			t.Errorf("attr %s: kind %s, want %s", a.Key, a.Value.Kind(), kinds[i])
		}
	}
	checkAttrs(t, r, map[string]string{"arg1": "before", "arg2": errTest.Error(), "arg3": "3", "arg4": "1s", "arg5": when.String(), "arg6": "[a]"})
}

func TestBoundString(t *testing.T) {
	for _, c := range []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven chars", 10, "eleven …"},
		{"ab\xffcd", 10, "ab\uFFFDcd"},
		{"日本語テキスト", 10, "日本…"}, // 3-byte runes: 6 bytes + the mark
		{"aé日本", 8, "aé…"},     // the 3-byte rune straddling the cut goes whole
		{"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 10, "\uFFFD…"},
		{"ab\xe6\x97", 10, "ab\uFFFD"}, // a truncated rune in the input
	} {
		got := boundString(c.in, c.limit)
		if got != c.want || len(got) > c.limit || !utf8.ValidString(got) {
			t.Errorf("boundString(%q, %d) = %q (%d bytes), want %q", c.in, c.limit, got, len(got), c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { boundString("a fine short string", maxAttrValueBytes) }); n != 0 {
		t.Errorf("boundString of a short valid string: %v allocs, want 0", n)
	}
}

func TestLogSinkBounds(t *testing.T) {
	rec := newRecorder()
	sink := newLogSink(nil, nil, rec.emit)

	long := strings.Repeat("é", 3000) // 6000 bytes
	logGP(sink, 1, "WARN", "Error dialing to %s: %s", "h:443", long+"\xff")
	r := rec.last(t)
	if len(r.Message) > maxMessageBytes || !utf8.ValidString(r.Message) || !strings.HasSuffix(r.Message, truncMark) {
		t.Errorf("message of %d bytes (valid %v) ending %q", len(r.Message), utf8.ValidString(r.Message), r.Message[len(r.Message)-8:])
	}
	if !strings.HasPrefix(r.Message, "Error dialing to h:443: éé") || len(r.Message) < maxMessageBytes-utf8.UTFMax {
		t.Errorf("message cut too early: %d bytes", len(r.Message))
	}
	errAttr := attrMap(r)["error"]
	if len(errAttr) > maxAttrValueBytes || len(errAttr) < maxAttrValueBytes-utf8.UTFMax ||
		!utf8.ValidString(errAttr) || !strings.HasSuffix(errAttr, truncMark) {
		t.Errorf("error attr of %d bytes, valid %v", len(errAttr), utf8.ValidString(errAttr))
	}

	// More arguments than attrs: 15 kept and the count of the rest.
	args := make([]any, 20)
	for i := range args {
		args[i] = i + 1
	}
	sink.Printf(strings.Repeat("%v ", 20), args...)
	r = rec.last(t)
	if len(r.Attrs) != maxAttrs {
		t.Fatalf("%d attrs, want %d", len(r.Attrs), maxAttrs)
	}
	if a := r.Attrs[maxAttrs-1]; a.Key != droppedAttrsKey || a.Value.Int64() != 5 {
		t.Errorf("last attr %v, want %s=5", a, droppedAttrsKey)
	}
	if a := r.Attrs[14]; a.Key != "arg15" || a.Value.Int64() != 15 {
		t.Errorf("attr 15 = %v", a)
	}
	// Nil arguments take no place but keep their number.
	withNils := append(make([]any, 5), args...)
	sink.Printf(strings.Repeat("%v ", 25), withNils...)
	r = rec.last(t)
	if len(r.Attrs) != maxAttrs || r.Attrs[0].Key != "arg6" || r.Attrs[14].Key != "arg20" || r.Attrs[15].Value.Int64() != 5 {
		t.Errorf("leading nils gave attrs %v", r.Attrs)
	}
	// Exactly maxAttrs fit without a count.
	sink.Printf(strings.Repeat("%v ", 16), args[:16]...)
	if r = rec.last(t); len(r.Attrs) != 16 || r.Attrs[15].Key != "arg16" {
		t.Errorf("16 args gave attrs %v", r.Attrs)
	}
}

func TestLogSinkSlogHandler(t *testing.T) {
	rec := newRecorder()
	level := new(slog.LevelVar)
	sink := newLogSink(level, func(int64) ConnID { t.Error("resolve called for an app record"); return 0 }, rec.emit)
	h := sink.handler()
	ctx := context.Background()

	level.Set(slog.LevelInfo)
	if h.Enabled(ctx, slog.LevelDebug) || !h.Enabled(ctx, slog.LevelInfo) {
		t.Error("Enabled does not follow the level")
	}
	logger := slog.New(h)
	logger.Debug("dropped")
	if n := len(rec.all()); n != 0 {
		t.Fatalf("%d records below the level", n)
	}
	level.Set(slog.LevelDebug)

	base := logger.With("service", "api", slog.Group("empty")).WithGroup("req").With("id", 42)
	text := "v1"
	base.Warn("upstream slow",
		"ms", 250*time.Millisecond,
		slog.Group("peer", "addr", "10.0.0.1:80", slog.Group("tls", "ver", "1.3")),
		slog.Group("", "inline", true),
		"err", errTest,
		"lazy", slog.AnyValue(logValuer{&text}),
		"conn", 99, // in the group: not the record's connection
	)
	text = "v2"
	r := rec.last(t)
	if r.Source != "app" || r.Level != slog.LevelWarn || r.Message != "upstream slow" || r.Conn != 0 || r.Session != 0 || r.Seq != 1 {
		t.Errorf("record %+v", r)
	}
	checkAttrs(t, r, map[string]string{
		"service": "api", "req.id": "42", "req.ms": "250ms", "req.peer.addr": "10.0.0.1:80", "req.peer.tls.ver": "1.3",
		"req.inline": "true", "req.err": errTest.Error(), "req.lazy": "v1", "req.conn": "99",
	})
	if want := []string{"service", "req.id", "req.ms", "req.peer.addr", "req.peer.tls.ver", "req.inline", "req.err", "req.lazy", "req.conn"}; !slices.Equal(keys(r), want) {
		t.Errorf("attr order %v, want %v", keys(r), want)
	}

	// A top-level conn attr, an int or a ConnID, in With or in the call, sets Conn.
	logger.Info("int", "conn", 12)
	if r := rec.last(t); r.Conn != 12 {
		t.Errorf("conn int: Conn %d", r.Conn)
	}
	logger.With("conn", ConnID(13)).Info("ConnID")
	if r := rec.last(t); r.Conn != 13 || attrMap(r)["conn"] != "13" || r.Attrs[0].Value.Kind() != slog.KindInt64 {
		t.Errorf("conn ConnID: Conn %d attrs %v", r.Conn, r.Attrs)
	}
	logger.With("conn", ConnID(13)).Info("call wins", "conn", uint64(14))
	if r := rec.last(t); r.Conn != 14 {
		t.Errorf("conn override: Conn %d", r.Conn)
	}
	logger.Info("not an id", "conn", "abc")
	if r := rec.last(t); r.Conn != 0 {
		t.Errorf("conn string: Conn %d", r.Conn)
	}

	// Time comes from the record, or is now when the record has none.
	when := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := h.Handle(ctx, slog.NewRecord(when, slog.LevelError, "at a time", 0)); err != nil {
		t.Fatal(err)
	}
	if r := rec.last(t); !r.Time.Equal(when) || r.Level != slog.LevelError {
		t.Errorf("time %v level %v", r.Time, r.Level)
	}
	before := time.Now()
	if err := h.Handle(ctx, slog.NewRecord(time.Time{}, slog.LevelInfo, "no time", 0)); err != nil {
		t.Fatal(err)
	}
	if r := rec.last(t); r.Time.Before(before) {
		t.Errorf("zero time became %v", r.Time)
	}

	// Handlers derived with WithAttrs do not change their parent.
	parent := h.WithAttrs([]slog.Attr{slog.String("a", "1")})
	_ = parent.WithAttrs([]slog.Attr{slog.String("b", "2")})
	_ = parent.Handle(ctx, slog.NewRecord(time.Time{}, slog.LevelInfo, "parent", 0))
	checkAttrs(t, rec.last(t), map[string]string{"a": "1"})
	if h.WithGroup("") != h {
		t.Error("WithGroup(\"\") is not the same handler")
	}
}

type logValuer struct{ s *string }

func (v logValuer) LogValue() slog.Value { return slog.StringValue(*v.s) }

func keys(r LogRecord) []string {
	var ks []string
	for _, a := range r.Attrs {
		ks = append(ks, a.Key)
	}
	return ks
}

func TestLogSinkSlogBounds(t *testing.T) {
	rec := newRecorder()
	sink := newLogSink(nil, nil, rec.emit)
	var with []any
	for i := range 10 {
		with = append(with, fmt.Sprintf("w%d", i), i)
	}
	logger := slog.New(sink.handler()).With(with...)
	var call []any
	for i := range 10 {
		call = append(call, fmt.Sprintf("c%d", i), strings.Repeat("x", 2000))
	}
	logger.Info(strings.Repeat("m", 5000)+"\xff", call...)
	r := rec.last(t)
	if len(r.Message) != maxMessageBytes || !strings.HasSuffix(r.Message, truncMark) {
		t.Errorf("message of %d bytes", len(r.Message))
	}
	if len(r.Attrs) != maxAttrs {
		t.Fatalf("%d attrs", len(r.Attrs))
	}
	if a := r.Attrs[maxAttrs-1]; a.Key != droppedAttrsKey || a.Value.Int64() != 5 {
		t.Errorf("last attr %v, want %s=5", a, droppedAttrsKey)
	}
	for _, a := range r.Attrs {
		if s := a.Value.String(); len(s) > maxAttrValueBytes || !utf8.ValidString(s) {
			t.Errorf("attr %s of %d bytes", a.Key, len(s))
		}
	}
	// The With attrs alone overflowing.
	for i := range 10 {
		with = append(with, fmt.Sprintf("v%d", i), i)
	}
	slog.New(sink.handler()).With(with...).Info("many")
	r = rec.last(t)
	if len(r.Attrs) != maxAttrs || r.Attrs[maxAttrs-1].Value.Int64() != 5 {
		t.Errorf("attrs %v", r.Attrs)
	}
}

func TestLogSinkErrorLog(t *testing.T) {
	rec := newRecorder()
	level := new(slog.LevelVar)
	sink := newLogSink(level, nil, rec.emit)
	if first := sink.errorLog(); first != sink.errorLog() {
		t.Error("errorLog returns a new logger on every call")
	}
	sink.errorLog().Printf("http: TLS handshake error from [::1]:5555: remote error: tls: bad certificate")
	r := rec.last(t)
	if r.Source != "http" || r.Level != slog.LevelWarn || r.Message != "http: TLS handshake error from [::1]:5555: remote error: tls: bad certificate" {
		t.Errorf("record %+v", r)
	}
	checkAttrs(t, r, map[string]string{"client": "[::1]:5555", "error": "remote error: tls: bad certificate"})

	sink.errorLog().Print(strings.Repeat("p", 70000))
	if r := rec.last(t); len(r.Message) != maxMessageBytes || len(r.Attrs) != 0 {
		t.Errorf("long line: %d bytes, attrs %v", len(r.Message), r.Attrs)
	}
	level.Set(slog.LevelError)
	sink.errorLog().Print("filtered")
	if n := len(rec.all()); n != 2 {
		t.Errorf("%d records, want 2", n)
	}
}

// TestLogSinkErrorLogRealTLSServer has a real TLS http.Server log a real
// handshake failure through the sink.
func TestLogSinkErrorLogRealTLSServer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rec := newRecorder()
	sink := newLogSink(nil, nil, rec.emit)
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = sink.errorLog()
	srv.StartTLS()
	defer srv.Close()

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().String()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(c) // the server answers plain HTTP on a TLS port with a 400 and closes
	c.Close()
	r := rec.waitFor(t, "for the handshake error", func(r LogRecord) bool { return r.Source == "http" })
	if r.Level != slog.LevelWarn || !strings.HasPrefix(r.Message, "http: TLS handshake error from "+local+": ") {
		t.Errorf("record %+v", r)
	}
	if attrMap(r)["client"] != local || attrMap(r)["error"] == "" {
		t.Errorf("attrs %v, want client %s", r.Attrs, local)
	}
}

// realProxy is a real goproxy on a loopback http.Server logging to a sink.
type realProxy struct {
	gp   *goproxy.ProxyHttpServer
	srv  *http.Server
	url  *url.URL
	done chan struct{}
}

func startRealProxy(t *testing.T, sink *logSink) *realProxy {
	t.Helper()
	gp := goproxy.NewProxyHttpServer()
	gp.Verbose = true
	gp.Logger = sink
	gp.ConnectDial = nil // not an HTTPS_PROXY from the environment
	gp.Tr.Proxy = nil
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &realProxy{
		gp:   gp,
		srv:  &http.Server{Handler: gp, ErrorLog: sink.errorLog(), ReadHeaderTimeout: 10 * time.Second},
		url:  &url.URL{Scheme: "http", Host: ln.Addr().String()},
		done: make(chan struct{}),
	}
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln)
	}()
	return p
}

// stop shuts the server down, waiting for its handlers to return.
func (p *realProxy) stop(t *testing.T) {
	t.Helper()
	if err := p.srv.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	<-p.done
	p.gp.Tr.CloseIdleConnections()
}

func (p *realProxy) client(roots *x509.CertPool) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(p.url),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
}

// sessionConn is the resolve of the integration tests: a fixed offset.
func sessionConn(s int64) ConnID { return ConnID(s + 1000) }

// checkSequence fails unless recs are numbered 1, 2, 3... with their
// session's conn.
func checkSequence(t *testing.T, recs []LogRecord) {
	t.Helper()
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Time.IsZero() || (r.Session != 0 && r.Conn != sessionConn(r.Session)) {
			t.Errorf("record %d: %+v", i, r)
		}
	}
}

// want is an expected record: level, session and message (prefix when
// prefix is set).
type want struct {
	level   slog.Level
	session int64
	message string
	prefix  bool
}

func (w want) match(r LogRecord) bool {
	if w.prefix {
		if !strings.HasPrefix(r.Message, w.message) {
			return false
		}
	} else if r.Message != w.message {
		return false
	}
	return r.Level == w.level && r.Session == w.session && r.Source == "goproxy"
}

// checkRecords fails unless recs are exactly wants, in order.
func checkRecords(t *testing.T, recs []LogRecord, wants []want) {
	t.Helper()
	ok := len(recs) == len(wants)
	for i := 0; ok && i < len(wants); i++ {
		ok = wants[i].match(recs[i])
	}
	if !ok {
		var b strings.Builder
		for _, w := range wants {
			fmt.Fprintf(&b, "  %s [%d] %q prefix=%v\n", LevelName(w.level), w.session, w.message, w.prefix)
		}
		t.Errorf("records:\n%swant:\n%s", dump(recs), b.String())
	}
}

func TestLogSinkRealGoproxyPlainHTTP(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rec := newRecorder()
	sink := newLogSink(nil, sessionConn, rec.emit)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer upstream.Close()
	refused := closedPort(t)
	p := startRealProxy(t, sink)
	client := p.client(nil)
	defer client.CloseIdleConnections()

	resp, err := client.Get(upstream.URL + "/path?q=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("body %q", body)
	}
	resp, err = client.Get("http://" + refused + "/gone")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d from a refused upstream", resp.StatusCode)
	}
	p.stop(t) // every handler has returned: every line is logged

	up := strings.TrimPrefix(upstream.URL, "http://")
	recs := rec.all()
	checkRecords(t, recs, []want{
		{slog.LevelDebug, 1, "Got request /path " + up + " GET " + upstream.URL + "/path?q=1", false},
		{slog.LevelDebug, 1, "Sending request GET " + upstream.URL + "/path?q=1", false},
		{slog.LevelDebug, 1, "Copying response to client 200 OK [200]", false},
		{slog.LevelDebug, 1, "Copied 5 bytes to client error=<nil>", false},
		{slog.LevelDebug, 2, "Got request /gone " + refused + " GET http://" + refused + "/gone", false},
		{slog.LevelDebug, 2, "Sending request GET http://" + refused + "/gone", false},
		{slog.LevelError, 2, "error read response " + refused + " : dial tcp " + refused + ": connect: connection refused", true},
	})
	checkSequence(t, recs)
	if len(recs) == 7 {
		checkAttrs(t, recs[0], map[string]string{"path": "/path", "host": up, "method": "GET", "url": upstream.URL + "/path?q=1"})
		checkAttrs(t, recs[2], map[string]string{"status_text": "200 OK", "status": "200"})
		checkAttrs(t, recs[3], map[string]string{"bytes": "5"})
		if a := attrMap(recs[6]); a["host"] != refused || !strings.Contains(a["error"], "connection refused") {
			t.Errorf("error read response attrs %v", a)
		}
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestLogSinkRealGoproxyConnectRefused(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rec := newRecorder()
	level := new(slog.LevelVar)
	level.Set(slog.LevelInfo) // the DEBUG lines are not even formatted
	sink := newLogSink(level, sessionConn, rec.emit)
	p := startRealProxy(t, sink)
	defer p.stop(t)
	refused := closedPort(t)

	c, err := net.Dial("tcp", p.url.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", refused, refused)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d", resp.StatusCode)
	}
	// goproxy logs before it answers, so the record is already there.
	recs := rec.all()
	checkRecords(t, recs, []want{
		{slog.LevelError, 1, "Error dialing to " + refused + ": dial tcp " + refused + ": connect: connection refused", false},
	})
	checkSequence(t, recs)
	if len(recs) == 1 {
		checkAttrs(t, recs[0], map[string]string{"host": refused, "error": "dial tcp " + refused + ": connect: connection refused"})
	}
	if sink.accepted() != 1 {
		t.Errorf("accepted %d", sink.accepted())
	}
}

func TestLogSinkRealGoproxyMITM(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rec := newRecorder()
	sink := newLogSink(nil, sessionConn, rec.emit)
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "secret")
	}))
	defer upstream.Close()
	refused := closedPort(t)

	p := startRealProxy(t, sink)
	defer p.stop(t)
	p.gp.OnRequest().HandleConnect(goproxy.AlwaysMitm)
	upstreamRoots := x509.NewCertPool()
	upstreamRoots.AddCert(upstream.Certificate())
	p.gp.Tr.TLSClientConfig = &tls.Config{RootCAs: upstreamRoots}
	ca, err := x509.ParseCertificate(goproxy.GoproxyCa.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	client := p.client(roots)

	resp, err := client.Get(upstream.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "secret" {
		t.Fatalf("body %q", body)
	}
	client.CloseIdleConnections() // the MITM loop then logs "Exiting on EOF" under the CONNECT session
	rec.waitFor(t, "Exiting on EOF", func(r LogRecord) bool { return r.Message == "Exiting on EOF" })

	// MITM answers the CONNECT without dialing; the round trip then fails.
	if _, err := client.Get("https://" + refused + "/b"); err == nil {
		t.Error("a request to a closed port succeeded")
	}
	rec.waitFor(t, "for the upstream failure", func(r LogRecord) bool { return r.Level == slog.LevelError })
	client.CloseIdleConnections()

	up := strings.TrimPrefix(upstream.URL, "https://")
	recs := rec.all()
	checkRecords(t, recs, []want{
		{slog.LevelDebug, 1, "Running 1 CONNECT handlers", false},
		{slog.LevelDebug, 1, "on 0th handler: &{2 <nil> ", true},
		{slog.LevelInfo, 1, "Received CONNECT request, mitm proxying it", false},
		{slog.LevelDebug, 1, "signing for 127.0.0.1", false},
		{slog.LevelDebug, 2, "req " + up, false},
		{slog.LevelDebug, 2, "Sending request GET " + upstream.URL + "/a", false},
		{slog.LevelDebug, 2, "resp 200 OK", false},
		{slog.LevelDebug, 1, "Exiting on EOF", false},
		{slog.LevelDebug, 3, "Running 1 CONNECT handlers", false},
		{slog.LevelDebug, 3, "on 0th handler: &{2 <nil> ", true},
		{slog.LevelInfo, 3, "Received CONNECT request, mitm proxying it", false},
		{slog.LevelDebug, 3, "signing for 127.0.0.1", false},
		{slog.LevelDebug, 4, "req " + refused, false},
		{slog.LevelDebug, 4, "Sending request GET https://" + refused + "/b", false},
		{slog.LevelError, 4, "Cannot read response from mitm'd server dial tcp " + refused + ": connect: connection refused", false},
	})
	checkSequence(t, recs)
	if len(recs) == 15 {
		checkAttrs(t, recs[1], map[string]string{"handler": "0", "action": recs[1].Message[len("on 0th handler: "):strings.LastIndexByte(recs[1].Message, ' ')], "host": up})
		checkAttrs(t, recs[3], map[string]string{"host": "127.0.0.1"})
		checkAttrs(t, recs[6], map[string]string{"status_text": "200 OK"})
		checkAttrs(t, recs[14], map[string]string{"error": "dial tcp " + refused + ": connect: connection refused"})
	}
}

// FuzzParseGoproxy feeds the sink goproxy-shaped and arbitrary calls: it must
// never panic and every record must be within bounds.
func FuzzParseGoproxy(f *testing.F) {
	for _, c := range goproxyCases {
		var s1, s2 string
		var n int64
		for _, a := range c.args {
			switch a := a.(type) {
			case string:
				if s1 == "" {
					s1 = a
				} else {
					s2 = a
				}
			case int:
				n = int64(a)
			case int64:
				n = a
			}
		}
		f.Add("[%03d] "+c.tag+": "+c.template+"\n", int64(7), s1, n, s2, uint8(0xff))
	}
	f.Add("%s %v %d %x %q", int64(0), "日本\xff", int64(-1), strings.Repeat("é", 3000), uint8(0x0f))
	f.Add("[%03d] WARN: %[2]*[1]d %!", int64(65535), "", int64(1<<40), "x", uint8(0x1f))
	f.Add("[%03d] WARN: Error dialing to %999999s: %s\n", int64(3), "h\xff", int64(0), "refused", uint8(0x0b))
	f.Add("[%03d] INFO: error read response h\xfe : 100% %s %!\n", int64(4), "", int64(0), "", uint8(0x01))
	f.Fuzz(func(t *testing.T, format string, session int64, s1 string, n int64, s2 string, shape uint8) {
		// shape's bits choose which arguments are passed: the session
		// first, then a string, an int64, an error, nil, a []byte.
		var args []any
		if shape&1 != 0 {
			args = append(args, session&0xFFFF)
		}
		if shape&2 != 0 {
			args = append(args, s1)
		}
		if shape&4 != 0 {
			args = append(args, n)
		}
		if shape&8 != 0 {
			args = append(args, errors.New(s2))
		}
		if shape&16 != 0 {
			args = append(args, nil)
		}
		if shape&32 != 0 {
			args = append(args, []byte(s2))
		}
		var got []LogRecord
		sink := newLogSink(nil, func(s int64) ConnID { return ConnID(s) }, func(r LogRecord) { got = append(got, r) })
		sink.Printf(format, args...)
		if len(got) != 1 {
			t.Fatalf("%d records", len(got))
		}
		r := got[0]
		switch r.Level {
		case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
		default:
			t.Errorf("level %v", r.Level)
		}
		if len(r.Message) > maxMessageBytes || !utf8.ValidString(r.Message) {
			t.Errorf("message of %d bytes, valid %v", len(r.Message), utf8.ValidString(r.Message))
		}
		if len(r.Attrs) > maxAttrs {
			t.Errorf("%d attrs", len(r.Attrs))
		}
		for _, a := range r.Attrs {
			if a.Value.Kind() == slog.KindString {
				if s := a.Value.String(); len(s) > maxAttrValueBytes || !utf8.ValidString(s) {
					t.Errorf("attr %s: %d bytes, valid %v", a.Key, len(s), utf8.ValidString(s))
				}
			}
		}
		// The session is the first argument of a goproxy-shaped call, whatever
		// it was passed as.
		var wantSession int64
		if len(args) > 0 && strings.HasPrefix(format, "[%03d] ") {
			wantSession, _ = args[0].(int64)
		}
		if r.Session != wantSession || r.Conn != ConnID(wantSession) {
			t.Errorf("session %d conn %d, want %d", r.Session, r.Conn, wantSession)
		}
		if r.Source != "goproxy" || r.Seq != 1 {
			t.Errorf("source %q seq %d", r.Source, r.Seq)
		}
	})
}

// benchLine is a typical line: every plain request logs it.
func benchLine() (string, []any) {
	return gpLine(1234, "INFO", "Got request %v %v %v %v", "/index.html", "example.com", "GET", "http://example.com/index.html")
}

func BenchmarkLogSinkPrintf(b *testing.B) {
	sink := newLogSink(nil, func(int64) ConnID { return 1 }, func(LogRecord) {})
	format, args := benchLine()
	b.ReportAllocs()
	for b.Loop() {
		sink.Printf(format, args...)
	}
}

// BenchmarkLogSinkPrintfFiltered is the path of every DEBUG line when the
// level is INFO or above: it must not allocate.
func BenchmarkLogSinkPrintfFiltered(b *testing.B) {
	level := new(slog.LevelVar)
	level.Set(slog.LevelInfo)
	sink := newLogSink(level, func(int64) ConnID { return 1 }, func(LogRecord) {})
	format, args := benchLine()
	b.ReportAllocs()
	for b.Loop() {
		sink.Printf(format, args...)
	}
}

func BenchmarkLogSinkSlog(b *testing.B) {
	logger := slog.New(newLogSink(nil, nil, func(LogRecord) {}).handler()).With("component", "bench")
	b.ReportAllocs()
	for b.Loop() {
		logger.Info("request done", "conn", 42, "status", 200, "host", "example.com")
	}
}

// levelObserver is a log observer that says the lowest level it wants, as a
// dashboard hub does.
type levelObserver struct {
	slog.LevelVar
	got chan LogRecord
}

func (o *levelObserver) ObserveLog(r LogRecord) { o.got <- r }

// debugLine and infoLine are goproxy lines as goproxy calls the Logger with
// them: every plain request logs the first (DEBUG for proxywatch), every
// CONNECT the second (INFO).
func debugLine() (string, []any) {
	return gpLine(7, "INFO", "Got request %v %v %v %v", "/index.html", "example.com", "GET", "http://example.com/index.html")
}

func infoLine() (string, []any) {
	return gpLine(7, "INFO", "Accepting CONNECT to %s", "example.com:443")
}

// A log line that no observer wants is never made: no record, no Seq, no
// allocation; an observer's Level is read on every line.
func TestLogSinkMakesOnlyWantedRecords(t *testing.T) {
	p := New(nil)
	defer p.Close()
	dFormat, dArgs := debugLine()
	iFormat, iArgs := infoLine()

	// No log observer at all.
	if allocs := testing.AllocsPerRun(100, func() {
		p.sink.Printf(dFormat, dArgs...)
		p.sink.Printf(iFormat, iArgs...)
	}); allocs != 0 {
		t.Errorf("%v allocations per unwanted line, want 0", allocs)
	}
	if n := p.Stats().Logs; n != 0 {
		t.Errorf("Stats().Logs = %d with no log observer, want 0", n)
	}
	if p.SlogHandler().Enabled(t.Context(), slog.LevelError) {
		t.Error("SlogHandler is enabled with no log observer")
	}

	// An observer that wants INFO and above.
	o := &levelObserver{got: make(chan LogRecord, 16)}
	o.Set(slog.LevelInfo)
	stop := p.Observe(o)
	defer stop()
	if allocs := testing.AllocsPerRun(100, func() { p.sink.Printf(dFormat, dArgs...) }); allocs != 0 {
		t.Errorf("%v allocations per DEBUG line nobody wants, want 0", allocs)
	}
	p.sink.Printf(iFormat, iArgs...)
	if r := recv(t, o.got); r.Level != slog.LevelInfo || r.Seq != 1 || r.Message != "Accepting CONNECT to example.com:443" {
		t.Errorf("got %+v, want the INFO line as Seq 1", r)
	}

	// It changes its mind: the next DEBUG line is made.
	o.Set(slog.LevelDebug)
	p.sink.Printf(dFormat, dArgs...)
	if r := recv(t, o.got); r.Level != slog.LevelDebug || r.Seq != 2 {
		t.Errorf("got %+v, want the DEBUG line as Seq 2", r)
	}

	// Another observer wants everything: records at any level are made and
	// go to both, the first filtering for itself.
	o.Set(slog.LevelError)
	all := make(chan LogRecord, 16)
	stopAll := p.Observe(LogObserverFunc(func(r LogRecord) { all <- r }))
	defer stopAll()
	p.sink.Printf(dFormat, dArgs...)
	if r := recv(t, all); r.Seq != 3 || r.Level != slog.LevelDebug {
		t.Errorf("got %+v, want the DEBUG line as Seq 3", r)
	}
	if r := recv(t, o.got); r.Seq != 3 {
		t.Errorf("the leveled observer got %+v, want Seq 3 as well", r)
	}
	if n := p.Stats().Logs; n != 3 {
		t.Errorf("Stats().Logs = %d, want 3", n)
	}
}

func recv(t *testing.T, ch <-chan LogRecord) LogRecord {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no record delivered")
	}
	return LogRecord{}
}

// fullLogQueue returns a Proxy whose one log observer's queue (of size n) is
// full: the observer is registered but its goroutine not started yet. start
// starts it; its records go to got.
func fullLogQueue(t testing.TB, n int) (p *Proxy, got chan LogRecord, start func()) {
	p = New(&Options{ObserverQueue: n})
	t.Cleanup(func() { p.Close() })
	got = make(chan LogRecord, 4*n)
	p.obs.add(newSubscriber(nil, nil, LogObserverFunc(func(r LogRecord) { got <- r }), n))
	format, args := debugLine()
	for range n {
		p.sink.Printf(format, args...)
	}
	return p, got, p.obs.start
}

// A record that no observer has room for is counted, not made: dropping
// allocates nothing, and the observer still learns exactly how many records it
// missed (LogRecord.Dropped and the gap in Seq).
func TestLogSinkDropsWithoutAllocating(t *testing.T) {
	const queue = 4
	p, got, start := fullLogQueue(t, queue)
	format, args := debugLine()
	var dropped atomic.Int64
	allocs := testing.AllocsPerRun(50, func() {
		p.sink.Printf(format, args...)
		dropped.Add(1)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per dropped record, want 0", allocs)
	}
	st := p.Stats()
	if st.Dropped != uint64(dropped.Load()) || st.Logs != uint64(queue+dropped.Load()) {
		t.Errorf("Stats: Dropped %d, Logs %d; want %d and %d", st.Dropped, st.Logs, dropped.Load(), queue+dropped.Load())
	}

	start()
	for i := range queue {
		if r := recv(t, got); r.Seq != uint64(i+1) || r.Dropped != 0 {
			t.Fatalf("queued record %d: Seq %d Dropped %d", i, r.Seq, r.Dropped)
		}
	}
	p.sink.Printf(format, args...)
	r := recv(t, got)
	if want := uint64(queue) + uint64(dropped.Load()) + 1; r.Seq != want || r.Dropped != uint64(dropped.Load()) {
		t.Errorf("after the drops: Seq %d Dropped %d, want Seq %d Dropped %d", r.Seq, r.Dropped, want, dropped.Load())
	}
}

// BenchmarkLogSinkThroughput is the whole path of a typical goproxy line
// through a Proxy: parse, format, attrs, queue, and delivery to an observer
// on its own goroutine. It reports the records delivered per second, until
// the last one was (the target is at least 1,000,000), and how many of every
// 100 made were dropped because the observer fell behind.
func BenchmarkLogSinkThroughput(b *testing.B) {
	p := New(nil)
	defer p.Close()
	var n atomic.Int64
	stop := p.Observe(LogObserverFunc(func(LogRecord) { n.Add(1) }))
	format, args := debugLine()
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		p.sink.Printf(format, args...)
	}
	stop() // delivers what is queued
	elapsed := time.Since(start)
	b.ReportMetric(float64(n.Load())/elapsed.Seconds(), "delivered/s")
	st := p.Stats()
	b.ReportMetric(100*float64(st.Dropped)/float64(b.N), "%dropped")
	if uint64(n.Load())+st.Dropped != uint64(b.N) {
		b.Fatalf("delivered %d + dropped %d of %d records", n.Load(), st.Dropped, b.N)
	}
}

// BenchmarkLogSinkDrop is a line that the only observer has no room for.
func BenchmarkLogSinkDrop(b *testing.B) {
	p, _, _ := fullLogQueue(b, 4)
	format, args := debugLine()
	b.ReportAllocs()
	for b.Loop() {
		p.sink.Printf(format, args...)
	}
	if p.Stats().Dropped != uint64(b.N) {
		b.Fatalf("dropped %d of %d", p.Stats().Dropped, b.N)
	}
}

// BenchmarkLogSinkUnwanted is a DEBUG line when the observers want INFO:
// the common case with a dashboard attached.
func BenchmarkLogSinkUnwanted(b *testing.B) {
	p := New(nil)
	defer p.Close()
	o := &levelObserver{got: make(chan LogRecord, 1)}
	o.Set(slog.LevelInfo)
	defer p.Observe(o)()
	format, args := debugLine()
	b.ReportAllocs()
	for b.Loop() {
		p.sink.Printf(format, args...)
	}
	if p.Stats().Logs != 0 {
		b.Fatal("an unwanted record was made")
	}
}
