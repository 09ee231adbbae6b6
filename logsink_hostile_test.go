package proxywatch

import (
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzHTTPErrorLog feeds the proxy's http.Server error log arbitrary lines.
// net/http writes peer-controlled text there (a TLS handshake error quotes
// what the client sent), so whatever the line, it must become exactly one
// WARN record of Source "http", valid UTF-8 and within the record bounds.
func FuzzHTTPErrorLog(f *testing.F) {
	for _, s := range []string{
		"http: TLS handshake error from 127.0.0.1:51234: tls: first record does not look like a TLS handshake\n",
		"http: TLS handshake error from [::1]:443: EOF",
		"http: TLS handshake error from ",
		"http: TLS handshake error from : : : ",
		"http: Accept error: accept tcp [::]:8080: accept4: too many open files; retrying in 5ms\n",
		"http: panic serving 127.0.0.1:1234: runtime error\ngoroutine 1 [running]:\n",
		"\xff\xfe\x00 " + strings.Repeat("é", 5000),
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var got []LogRecord
		sink := newLogSink(nil, func(int64) ConnID { return 0 }, func(r LogRecord) { got = append(got, r) })
		n, err := httpErrorWriter{sink}.Write(line)
		if n != len(line) || err != nil {
			t.Fatalf("Write = %d, %v for %d bytes", n, err, len(line))
		}
		if len(got) != 1 {
			t.Fatalf("%d records", len(got))
		}
		r := got[0]
		if r.Level != slog.LevelWarn || r.Source != sourceHTTP {
			t.Errorf("level %v source %q", r.Level, r.Source)
		}
		if len(r.Message) > maxMessageBytes || !utf8.ValidString(r.Message) {
			t.Errorf("message of %d bytes, valid UTF-8 %v", len(r.Message), utf8.ValidString(r.Message))
		}
		if len(r.Attrs) > maxAttrs {
			t.Errorf("%d attrs", len(r.Attrs))
		}
		for _, a := range r.Attrs {
			if s := a.Value.String(); len(s) > maxAttrValueBytes || !utf8.ValidString(s) {
				t.Errorf("attr %s of %d bytes, valid UTF-8 %v", a.Key, len(s), utf8.ValidString(s))
			}
		}
	})
}
