package prometheus_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxywatch/proxywatch"
	pwprom "github.com/proxywatch/proxywatch/exporters/prometheus"
	"github.com/proxywatch/proxywatch/internal/proxytest"
)

// BenchmarkHotPath measures what the exporter costs the proxy's hot path:
// proxytest.HotPath, with a Collector on the watched Proxy (scraped once per
// 1000 requests, more often than any Prometheus would).
//
//	go test -run '^$' -bench HotPath -benchtime 3000x -count 3
func BenchmarkHotPath(b *testing.B) {
	watched := proxywatch.New(nil)
	c := pwprom.New(watched, &pwprom.Options{TopHosts: 10})
	b.Cleanup(watched.Observe(c))
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	proxytest.HotPath(b, watched, func() error {
		_, err := reg.Gather()
		return err
	})
}

// BenchmarkObserveEvents measures the exporter's own work for one plain-HTTP
// exchange's worth of events (opened, closed, four log records), as its
// observer goroutine does it: off the proxy's request path, and it should not
// allocate.
func BenchmarkObserveEvents(b *testing.B) {
	o := pwprom.New(nil, &pwprom.Options{TopHosts: 10})
	op := opened(1, proxywatch.ProtoHTTP, "a.example:80")
	cl := closed(1, proxywatch.ProtoHTTP, "a.example:80", time.Millisecond, 10, 1000, proxywatch.EndCompleted)
	lr := proxywatch.LogRecord{Level: slog.LevelDebug}
	b.ReportAllocs()
	for b.Loop() {
		o.ObserveConn(op)
		o.ObserveConn(cl)
		for range 4 {
			o.ObserveLog(lr)
		}
	}
}
