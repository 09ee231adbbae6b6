package prometheus_test

import (
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/exporters/internal/proxytest"
	pwprom "github.com/proxywatch/proxywatch/exporters/prometheus"
)

// BenchmarkHotPath measures what the exporter costs the proxy's hot path. One
// plain-HTTP request loop goes, in the same run, through three Proxies: a bare
// one, one with an observer that does nothing (the cost of having events
// delivered at all, which any observer pays), and one with a Collector
// (scraped once per 1000 requests, more often than any Prometheus would). The
// requests take turns, in rotating order, so that the machine's noise falls on
// all alike. It reports the median time per request through each, and the
// ratios exporter/bare and exporter/noop (1.00 means no cost). Medians,
// because a shared machine's pauses land on single requests and would swamp a
// mean.
//
//	go test -run '^$' -bench HotPath -benchtime 3000x -count 3
func BenchmarkHotPath(b *testing.B) {
	web := proxytest.Upstream(b, 1024)

	bare := proxywatch.New(nil)
	noop := proxywatch.New(nil)
	b.Cleanup(noop.Observe(proxytest.Observer{
		ConnObserver: proxywatch.ConnObserverFunc(func(proxywatch.ConnEvent) {}),
		LogObserver:  proxywatch.LogObserverFunc(func(proxywatch.LogRecord) {}),
	}))
	watched := proxywatch.New(nil)
	c := pwprom.New(watched, &pwprom.Options{TopHosts: 10})
	b.Cleanup(watched.Observe(c))
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	clients := []*http.Client{
		proxytest.Client(b, proxytest.Serve(b, bare)),
		proxytest.Client(b, proxytest.Serve(b, noop)),
		proxytest.Client(b, proxytest.Serve(b, watched)),
	}
	get := func(hc *http.Client) time.Duration {
		start := time.Now()
		resp, err := hc.Get(web.URL)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start)
	}
	// Warm all up: keep-alive connections, goproxy's and the upstream's.
	for range 50 {
		for _, hc := range clients {
			get(hc)
		}
	}

	times := make([][]time.Duration, len(clients))
	for i := 0; b.Loop(); i++ {
		for k := range clients {
			j := (i + k) % len(clients)
			times[j] = append(times[j], get(clients[j]))
		}
		if i%1000 == 999 {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	}
	mBare, mNoop, mWatched := median(times[0]), median(times[1]), median(times[2])
	b.ReportMetric(float64(mBare), "ns/req-bare")
	b.ReportMetric(float64(mNoop), "ns/req-noop")
	b.ReportMetric(float64(mWatched), "ns/req-exporter")
	b.ReportMetric(float64(mWatched)/float64(mBare), "exporter/bare")
	b.ReportMetric(float64(mWatched)/float64(mNoop), "exporter/noop")
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
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
