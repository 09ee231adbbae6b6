package proxywatch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

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

// sprintf must give exactly what fmt.Sprintf gives, whatever it is handed.
func TestSprintfMatchesFmt(t *testing.T) {
	type named string
	cases := []struct {
		format string
		args   []any
	}{
		{"Got request %v %v %v %v", []any{"/index.html", "example.com", "GET", "http://example.com/index.html"}},
		{"Copying response to client %v [%d]", []any{"200 OK", 200}},
		{"Copied %v bytes to client error=%v", []any{int64(1234), nil}},
		{"Copied %v bytes to client error=%v", []any{int64(-1), errors.New("broken pipe")}},
		{"on %dth handler: %v %s", []any{0, &goproxyActionStub{}, "example.com:443"}},
		{"%d%%", []any{int64(50)}},
		{"%v %v %v", []any{true, uint64(1 << 63), int(-7)}},
		{"%s", []any{named("typed")}},
		{"%s %d", []any{1, "x"}},   // wrong verbs
		{"%d %s", []any{nil, nil}}, // nil with other verbs
		{"%5d|%-3v|%x", []any{1, 2, 3}},
		{"too few %v %v", []any{"a"}},
		{"too many %v", []any{"a", "b"}},
		{"trailing %", nil},
		{"%!", []any{1}},
		{"no verbs", nil},
		{"", nil},
		{"unicode ✓ %v ✓", []any{"é"}},
		{"%v", []any{strings.Repeat("long ", 100)}},
	}
	for _, c := range cases {
		if got, want := sprintf(c.format, c.args), fmt.Sprintf(c.format, c.args...); got != want {
			t.Errorf("sprintf(%q, %v) = %q, want %q", c.format, c.args, got, want)
		}
	}
}

type goproxyActionStub struct{}

func (*goproxyActionStub) String() string { return "action" }

func FuzzSprintf(f *testing.F) {
	f.Add("Got request %v %v %v %v", "a", int64(1), true, 7)
	f.Add("%d%%%s%v", "b", int64(-2), false, 0)
	f.Add("%", "", int64(0), true, 1)
	f.Fuzz(func(t *testing.T, format, s string, i int64, b bool, n int) {
		args := []any{s, i, b, nil, n, uint64(i)}
		for k := 0; k <= len(args); k++ {
			if got, want := sprintf(format, args[:k]), fmt.Sprintf(format, args[:k]...); got != want {
				t.Fatalf("sprintf(%q, %v) = %q, want %q", format, args[:k], got, want)
			}
		}
	})
}

// A plain response body reaches the client connection's ReadFrom (net/http
// hands it there): the copy takes a pooled buffer instead of allocating 32
// KiB for every response, as a bare *net.TCPConn does.
func TestClientReadFromUsesPooledBuffer(t *testing.T) {
	p := New(nil)
	defer p.Close()
	c := &trackedTCPConn{trackedConn: &trackedConn{Conn: nopConn{}, p: p}}
	body := make([]byte, 1024)
	copyBody := func() {
		n, err := c.ReadFrom(struct{ io.Reader }{bytes.NewReader(body)}) // no WriteTo: a real copy
		if n != int64(len(body)) || err != nil {
			t.Fatalf("ReadFrom: %d, %v", n, err)
		}
	}
	copyBody()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 100
	for range n {
		copyBody()
	}
	runtime.ReadMemStats(&after)
	// Without the pool every copy allocates 32 KiB. With it, nothing; but
	// the race detector makes sync.Pool drop a share of what it is given,
	// so the bound is half a buffer.
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 16<<10 {
		t.Errorf("%d bytes allocated per response copied, want no 32 KiB copy buffer each time", per)
	}
	if c.wire.Load() != (n+1)*uint64(len(body)) {
		t.Errorf("wire count %d, want %d", c.wire.Load(), (n+1)*len(body))
	}
}
