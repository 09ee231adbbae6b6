package proxywatch

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

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

// The message of a known goproxy template is only bounded for length when its
// strings are valid; a string that is not valid UTF-8, or too long, still
// gives a valid, bounded message and attrs.
func TestKnownTemplateMessageBounds(t *testing.T) {
	rec := newRecorder()
	sink := newLogSink(nil, nil, rec.emit)
	long := strings.Repeat("é", 3000)
	for _, args := range [][]any{
		{"/index.html", "example.com", "GET", "http://example.com/index.html"},
		{"/\xff", "example.com", "GET", "http://example.com/\xff"},
		{long, "example.com", "GET", "http://example.com/" + long},
		{long + "\xff", "example.com", "GET", "x"},
	} {
		format, all := gpLine(7, "INFO", "Got request %v %v %v %v", args...)
		sink.Printf(format, all...)
		r := rec.last(t)
		if !utf8.ValidString(r.Message) || len(r.Message) > maxMessageBytes {
			t.Errorf("message of %d bytes, valid %v", len(r.Message), utf8.ValidString(r.Message))
		}
		if want := "Got request " + args[0].(string); len(args[0].(string)) < 100 && utf8.ValidString(args[0].(string)) && !strings.HasPrefix(r.Message, want) {
			t.Errorf("message %q, want it to start with %q", r.Message, want)
		}
		for _, a := range r.Attrs {
			if a.Value.Kind() == slog.KindString {
				if s := a.Value.String(); !utf8.ValidString(s) || len(s) > maxAttrValueBytes {
					t.Errorf("attr %s: %d bytes, valid %v", a.Key, len(s), utf8.ValidString(s))
				}
			}
		}
		if r.Level != slog.LevelDebug || r.Session != 7 {
			t.Errorf("level %v session %d, want DEBUG and 7", r.Level, r.Session)
		}
	}
}

// A known template is recognized whatever string holds it: a copy made at
// run time parses as the constant does, and a format that shares nothing
// with a template is not taken for one.
func TestTemplateCacheComparesFormats(t *testing.T) {
	format, args := benchLine()
	first := parseGoproxy(format, args)
	copied := strings.Clone(format)
	second := parseGoproxy(copied, args)
	again := parseGoproxy(format, args)
	for _, p := range []parsedLine{second, again} {
		if !p.known || p.level != first.level || p.format != first.format || len(p.roles) != len(first.roles) || p.session != first.session {
			t.Errorf("parsed %+v, want %+v", p, first)
		}
	}
	other := parseGoproxy("[%03d] INFO: not a template %v\n", []any{int64(1), "x"})
	if other.known || other.roles != nil || other.format != "not a template %v" {
		t.Errorf("an unknown line parsed as %+v", other)
	}
}

// A typical goproxy line makes its record, message and attrs, in one
// allocation, and every record has memory of its own: an observer may keep
// each one it is given.
func TestTypicalRecordIsOneAllocation(t *testing.T) {
	var got []LogRecord
	sink := newLogSink(nil, nil, func(r LogRecord) { got = append(got, r) })
	format, args := benchLine()
	got = make([]LogRecord, 0, 200)
	if allocs := testing.AllocsPerRun(100, func() { sink.Printf(format, args...) }); allocs != 1 {
		t.Errorf("%v allocations per typical record, want 1", allocs)
	}
	got = got[:0]
	for _, path := range []string{"/a", "/bb", "/ccc"} {
		f, a := gpLine(9, "INFO", "Got request %v %v %v %v", path, "example.com", "GET", "http://example.com"+path)
		sink.Printf(f, a...)
	}
	for i, path := range []string{"/a", "/bb", "/ccc"} {
		r := got[i]
		want := "Got request " + path + " example.com GET http://example.com" + path
		if r.Message != want || len(r.Attrs) != 4 || r.Attrs[0].Value.String() != path {
			t.Errorf("record %d: %q %v, want %q", i, r.Message, r.Attrs, want)
		}
		if cap(r.Attrs) != len(r.Attrs) {
			t.Errorf("record %d: attrs have room for %d more", i, cap(r.Attrs)-len(r.Attrs))
		}
	}
}
