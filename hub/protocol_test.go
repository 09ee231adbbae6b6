package hub_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
)

func TestLogFromRecord(t *testing.T) {
	r := proxywatch.LogRecord{
		Seq: 9, Time: time.Date(2026, 11, 27, 11, 0, 0, 0, time.FixedZone("CET", 3600)), Level: slogLevel(2),
		Message: "m", Source: "app", Session: 3, Conn: 4,
		Attrs: attrs(),
	}
	b, err := json.Marshal(hub.LogFromRecord(r))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"level":"INFO","session":3,"message":"m","time":"2026-11-27T10:00:00Z","seq":9,"conn":4,"source":"app",` +
		`"attrs":{"d":"1.5s","err":"boom","f":"+Inf","g":{"n":1},"n":-3,"ok":true,"s":"x","u":7}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func slogLevel(l int) slog.Level { return slog.Level(l) }

func attrs() []slog.Attr {
	return []slog.Attr{
		slog.String("s", "x"), slog.Int("n", -3), slog.Uint64("u", 7), slog.Float64("f", math.Inf(1)),
		slog.Bool("ok", true), slog.Duration("d", 1500*time.Millisecond), slog.Any("err", errors.New("boom")),
		slog.Group("g", slog.Int("n", 1)), slog.Group("", slog.Group("empty")), slog.String("", "no key"),
	}
}

// stdConn mirrors Conn without its MarshalJSON, with rates as the integers
// the protocol sends: what encoding/json makes of it is the reference for
// the hand-written encoder.
type stdConn struct {
	ID        int64     `json:"id"`
	Method    string    `json:"method"`
	Host      string    `json:"host"`
	URL       string    `json:"url"`
	Remote    string    `json:"remote"`
	Protocol  string    `json:"protocol"`
	Up        uint64    `json:"up"`
	Down      uint64    `json:"down"`
	Start     time.Time `json:"start"`
	UpRate    int64     `json:"upRate"`
	DownRate  int64     `json:"downRate"`
	Status    int       `json:"status"`
	Parent    int64     `json:"parent"`
	End       time.Time `json:"end,omitzero"`
	EndReason string    `json:"endReason,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// FuzzConnJSONIsEncodingJSON checks that the hand-written encoder's output
// is byte for byte encoding/json's (without HTML escaping) for any strings,
// numbers and times a connection can hold.
func FuzzConnJSONIsEncodingJSON(f *testing.F) {
	for _, s := range []string{
		"", "plain", `quo"te`, "new\nline\r\t\b\f", "\x00\x01\x1f\x7f", "<script>&amp;</script>",
		"\u2028\u2029", "héllo ✓ 🚀", "bad \xff\xfe utf8", "\xed\xa0\x80", "trunc \xe2\x82",
	} {
		f.Add(s, "GET", int64(42), uint64(1)<<63, 1234.5, 200, true)
	}
	f.Fuzz(func(t *testing.T, s, method string, id int64, n uint64, rate float64, status int, ended bool) {
		start := time.Unix(0, id).In(time.FixedZone("X", 3600))
		ci := proxywatch.ConnInfo{
			ID: proxywatch.ConnID(id), Parent: proxywatch.ConnID(-id), Method: method, Host: s, URL: s + method,
			Client: s, Protocol: proxywatch.Protocol(s), Up: n, Down: ^n, UpRate: rate, DownRate: -rate,
			Start: start, Status: status,
		}
		if ended {
			ci.End, ci.EndReason, ci.Err = start.Add(time.Duration(n>>1)), proxywatch.EndReason(s), method
		}
		c := hub.ConnFromInfo(ci)
		got, _ := c.MarshalJSON()
		want := stdConn{
			ID: id, Method: method, Host: s, URL: s + method, Remote: s, Protocol: s, Up: n, Down: ^n,
			Start: start.UTC(), UpRate: wireRate(rate), DownRate: wireRate(-rate), Status: status, Parent: -id,
		}
		if ended {
			want.End, want.EndReason, want.Error = ci.End.UTC(), s, method
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(want); err != nil {
			t.Skip("not representable in JSON:", err) // a year past 9999
		}
		if w := bytes.TrimSuffix(b.Bytes(), []byte("\n")); !bytes.Equal(got, w) {
			t.Fatalf("encoder\n%s\nencoding/json\n%s", got, w)
		}
	})
}

// wireRate is the protocol's rounding of rates (PROTOCOL.md: integers).
func wireRate(r float64) int64 {
	if r > 0 && !math.IsNaN(r) {
		return int64(math.Round(min(r, 1<<63-1024)))
	}
	return 0
}
