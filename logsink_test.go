package proxywatch_test

import (
	"fmt"
	"log/slog"
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
