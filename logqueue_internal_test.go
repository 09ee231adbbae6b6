package proxywatch

import (
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

// The log queue keeps records in order across the end of its ring, refuses
// what does not fit, and lets go of the records it handed over.
func TestLogQueueOrderAndBound(t *testing.T) {
	q := newLogQueue(5)
	next, want := uint64(1), uint64(1)
	push := func(n int) {
		for range n {
			_, ok := q.push(LogRecord{Seq: next, Message: "m"})
			if !ok {
				t.Fatalf("push %d refused with %d queued", next, q.len())
			}
			next++
		}
	}
	buf := make([]LogRecord, 3)
	takeAll := func() {
		for q.len() > 0 {
			for _, r := range q.take(buf) {
				if r.Seq != want {
					t.Fatalf("took Seq %d, want %d", r.Seq, want)
				}
				want++
			}
		}
	}
	for round := range 7 { // the head goes round the ring several times
		push(1 + round%5)
		takeAll()
	}
	push(5)
	if n, ok := q.push(LogRecord{Seq: 99}); ok || n != 5 || !q.full() {
		t.Fatalf("push into a full queue: queued %d, ok %v, full %v", n, ok, q.full())
	}
	takeAll()
	if want != next {
		t.Fatalf("took up to Seq %d, pushed up to %d", want-1, next-1)
	}
	for i, r := range q.ring {
		if r.Message != "" {
			t.Fatalf("ring slot %d still holds a record that was taken", i)
		}
	}
	if got := q.take(buf); len(got) != 0 {
		t.Fatalf("take from an empty queue returned %d records", len(got))
	}
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
