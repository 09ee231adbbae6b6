package otel_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/proxywatch/proxywatch"
	pwotel "github.com/proxywatch/proxywatch/exporters/otel"
	"github.com/proxywatch/proxywatch/internal/proxytest"
)

// BenchmarkHotPath measures what the exporter costs the proxy's hot path:
// proxytest.HotPath, with an Observer recording into the OpenTelemetry SDK
// (collected once per 1000 requests) on the watched Proxy.
//
//	go test -run '^$' -bench HotPath -benchtime 3000x -count 3
func BenchmarkHotPath(b *testing.B) {
	watched := proxywatch.New(nil)
	o, reader := newObserver(b, watched, pwotel.Options{TopHosts: 10})
	b.Cleanup(watched.Observe(o))
	var rm metricdata.ResourceMetrics
	proxytest.HotPath(b, watched, func() error { return reader.Collect(context.Background(), &rm) })
}

// BenchmarkObserveEvents measures the exporter's own work for one plain-HTTP
// exchange's worth of events (opened, closed, four log records), as its
// observer goroutine does it: off the proxy's request path, and it should not
// allocate.
func BenchmarkObserveEvents(b *testing.B) {
	o, _ := newObserver(b, nil, pwotel.Options{TopHosts: 10})
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
