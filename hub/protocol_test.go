package hub_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
)

// FuzzConnJSON checks the hand-written connection encoder against
// encoding/json: the output is valid JSON, and decodes to the same strings
// that encoding/json's own encoding of them decodes to (invalid UTF-8
// becomes U+FFFD in both).
func FuzzConnJSON(f *testing.F) {
	for _, s := range []string{
		"", "plain", `quo"te`, `back\slash`, "new\nline\r\t", "\x00\x01\x1f\x7f", "<script>&amp;</script>",
		"\u2028\u2029", "héllo wörld ✓ 🚀", "bad \xff\xfe utf8", "\xed\xa0\x80 surrogate", "trunc \xe2\x82",
	} {
		f.Add(s, int64(42), uint64(1)<<63, 1234.5)
	}
	f.Fuzz(func(t *testing.T, s string, id int64, n uint64, rate float64) {
		c := hub.ConnFromInfo(proxywatch.ConnInfo{
			ID: proxywatch.ConnID(id), Method: s, Host: s, URL: s, Client: s, Protocol: proxywatch.Protocol(s),
			Up: n, Down: n, UpRate: rate, DownRate: -rate, Start: time.Unix(0, id).UTC(), End: time.Unix(1, id),
			EndReason: proxywatch.EndReason(s), Err: s,
		})
		b, err := c.MarshalJSON()
		if err != nil || !json.Valid(b) {
			t.Fatalf("invalid JSON %q (%v)", b, err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		std, _ := json.Marshal(s)
		var want string
		json.Unmarshal(std, &want)
		for _, k := range []string{"method", "host", "url", "remote", "protocol"} {
			if got[k] != want {
				t.Fatalf("%s = %q, want %q", k, got[k], want)
			}
		}
		if s != "" && (got["endReason"] != want || got["error"] != want) {
			t.Fatalf("endReason %q, error %q, want %q", got["endReason"], got["error"], want)
		}
		var back hub.Conn
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.ID != c.ID || back.Up != n || !back.Start.Equal(c.Start) || !back.End.Equal(c.End) {
			t.Fatalf("round trip %+v, want %+v", back, c)
		}
		// Rates are encoded rounded, never negative and never past what a
		// JSON integer decodes to exactly; UpRate is rate and DownRate -rate.
		wantRate := func(r float64) float64 {
			if r > 0 && !math.IsNaN(r) {
				return math.Round(min(r, 1<<63-1024))
			}
			return 0
		}
		if back.UpRate != wantRate(rate) || back.DownRate != wantRate(-rate) {
			t.Fatalf("rates %v/%v for %v, want %v/%v", back.UpRate, back.DownRate, rate, wantRate(rate), wantRate(-rate))
		}
	})
}

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
