package otel_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/proxywatch/proxywatch"
	pwotel "github.com/proxywatch/proxywatch/exporters/otel"
)

var t0 = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

func opened(id proxywatch.ConnID, proto proxywatch.Protocol, host string) proxywatch.ConnEvent {
	return proxywatch.ConnEvent{State: proxywatch.ConnOpened, Conn: proxywatch.ConnInfo{
		ID: id, Protocol: proto, Host: host, Start: t0,
	}}
}

func closed(id proxywatch.ConnID, proto proxywatch.Protocol, host string, d time.Duration, up, down uint64, why proxywatch.EndReason) proxywatch.ConnEvent {
	return proxywatch.ConnEvent{State: proxywatch.ConnClosed, Conn: proxywatch.ConnInfo{
		ID: id, Protocol: proto, Host: host, Start: t0, End: t0.Add(d), Up: up, Down: down, EndReason: why,
	}}
}

// newObserver makes an Observer of p (which may be nil) recording into a
// MeterProvider read by a ManualReader.
func newObserver(t testing.TB, p *proxywatch.Proxy, opts pwotel.Options) (*pwotel.Observer, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	opts.MeterProvider = mp
	o, err := pwotel.New(p, &opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	})
	return o, reader
}

// collect reads every metric of the exporter's scope, by name.
func collect(t testing.TB, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != pwotel.ScopeName {
			t.Errorf("metrics from scope %q", sm.Scope.Name)
			continue
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// check compares each wanted metric with what was collected, ignoring
// timestamps and the order of data points.
func check(t testing.TB, got map[string]metricdata.Metrics, want ...metricdata.Metrics) {
	t.Helper()
	for _, w := range want {
		g, ok := got[w.Name]
		if !ok {
			t.Errorf("no metric %s", w.Name)
			continue
		}
		metricdatatest.AssertEqual(t, w, g, metricdatatest.IgnoreTimestamp())
	}
}

func set(kv ...attribute.KeyValue) attribute.Set { return attribute.NewSet(kv...) }

var (
	protocol  = func(p proxywatch.Protocol) attribute.KeyValue { return attribute.String("protocol", string(p)) }
	reason    = func(r proxywatch.EndReason) attribute.KeyValue { return attribute.String("reason", string(r)) }
	direction = func(d string) attribute.KeyValue { return attribute.String("direction", d) }
	level     = func(l string) attribute.KeyValue { return attribute.String("level", l) }
	host      = func(h string) attribute.KeyValue { return attribute.String("host", h) }
)

// counter is a cumulative monotonic Int64 sum.
func counter(name, unit, desc string, points ...metricdata.DataPoint[int64]) metricdata.Metrics {
	return metricdata.Metrics{Name: name, Unit: unit, Description: desc, Data: metricdata.Sum[int64]{
		Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: points,
	}}
}

// gauge is a cumulative non-monotonic Int64 sum (an UpDownCounter).
func gauge(name, unit, desc string, points ...metricdata.DataPoint[int64]) metricdata.Metrics {
	return metricdata.Metrics{Name: name, Unit: unit, Description: desc, Data: metricdata.Sum[int64]{
		Temporality: metricdata.CumulativeTemporality, DataPoints: points,
	}}
}

func point(v int64, kv ...attribute.KeyValue) metricdata.DataPoint[int64] {
	return metricdata.DataPoint[int64]{Attributes: set(kv...), Value: v}
}

func hpoint[N int64 | float64](bounds []float64, counts []uint64, min, max, sum N, kv ...attribute.KeyValue) metricdata.HistogramDataPoint[N] {
	var n uint64
	for _, c := range counts {
		n += c
	}
	return metricdata.HistogramDataPoint[N]{
		Attributes: set(kv...), Count: n, Bounds: bounds, BucketCounts: counts,
		Min: metricdata.NewExtrema(min), Max: metricdata.NewExtrema(max), Sum: sum,
	}
}

const (
	descOpened   = "Connections that entered the live set, by protocol at open."
	descClosed   = "Connections that ended, by protocol and end reason."
	descDuration = "How long ended connections lived, by protocol."
	descSize     = "Bytes each ended connection carried, by protocol and direction (up: client to upstream, down: upstream to client)."
	descLogs     = "Log records received by this exporter, by level."
	descLogsDrop = "Log records this exporter missed because its observer queue was full."
	descBytes    = "Bytes the proxy carried since it was created, by direction (up: client to upstream, down: upstream to client); equals Proxy.Stats().Up and .Down."
	descLive     = "Connections in the live set, by protocol."
	descDropped  = "Observer events (traffic samples, connection events, log records) the proxy dropped because an observer, any observer, did not keep up."
	descHostB    = "Bytes carried by ended connections, by host (the top hosts by bytes; the rest are \"other\") and direction."
	descHostC    = "Connections that ended, by host (the top hosts by bytes; the rest are \"other\")."
	descHostLive = "Connections in the live set, by host (the top hosts by bytes; the rest are \"other\")."
)

// openedPoints returns the data points of proxywatch.connections.opened: the
// known protocols at zero unless given in n.
func openedPoints(n map[proxywatch.Protocol]int64) []metricdata.DataPoint[int64] {
	var pts []metricdata.DataPoint[int64]
	for _, p := range []proxywatch.Protocol{
		proxywatch.ProtoHTTP, proxywatch.ProtoTunnel, proxywatch.ProtoHTTPSMITM,
		proxywatch.ProtoHTTPMITM, proxywatch.ProtoWebSocket, proxywatch.ProtoWebSocketMITM,
	} {
		pts = append(pts, point(n[p], protocol(p)))
	}
	return pts
}

func TestConnEvents(t *testing.T) {
	durB, sizeB := []float64{0.1, 1}, []float64{1000, 10000}
	o, r := newObserver(t, nil, pwotel.Options{DurationBuckets: durB, SizeBuckets: sizeB})
	o.ObserveConn(opened(1, proxywatch.ProtoHTTP, "a:80"))
	o.ObserveConn(opened(2, proxywatch.ProtoHTTP, "b:80"))
	o.ObserveConn(opened(3, proxywatch.ProtoTunnel, "c:443"))
	o.ObserveConn(closed(1, proxywatch.ProtoHTTP, "a:80", 20*time.Millisecond, 100, 5000, proxywatch.EndCompleted))
	// 2 upgraded to a WebSocket before it closed.
	o.ObserveConn(closed(2, proxywatch.ProtoWebSocket, "b:80", 3*time.Second, 2000, 20000, proxywatch.EndClientClosed))
	o.ObserveConn(closed(3, proxywatch.ProtoTunnel, "c:443", 500*time.Millisecond, 700, 9000, proxywatch.EndCompleted))
	o.ObserveConn(proxywatch.ConnEvent{State: 99, Conn: proxywatch.ConnInfo{Protocol: proxywatch.ProtoHTTP}}) // ignored

	got := collect(t, r)
	check(t, got,
		counter("proxywatch.connections.opened", "{connection}", descOpened,
			openedPoints(map[proxywatch.Protocol]int64{proxywatch.ProtoHTTP: 2, proxywatch.ProtoTunnel: 1})...),
		counter("proxywatch.connections.closed", "{connection}", descClosed,
			point(1, protocol(proxywatch.ProtoHTTP), reason(proxywatch.EndCompleted)),
			point(1, protocol(proxywatch.ProtoWebSocket), reason(proxywatch.EndClientClosed)),
			point(1, protocol(proxywatch.ProtoTunnel), reason(proxywatch.EndCompleted))),
		metricdata.Metrics{Name: "proxywatch.connection.duration", Unit: "s", Description: descDuration,
			Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{
				hpoint(durB, []uint64{1, 0, 0}, 0.02, 0.02, 0.02, protocol(proxywatch.ProtoHTTP)),
				hpoint(durB, []uint64{0, 0, 1}, 3.0, 3.0, 3.0, protocol(proxywatch.ProtoWebSocket)),
				hpoint(durB, []uint64{0, 1, 0}, 0.5, 0.5, 0.5, protocol(proxywatch.ProtoTunnel)),
			}}},
		metricdata.Metrics{Name: "proxywatch.connection.size", Unit: "By", Description: descSize,
			Data: metricdata.Histogram[int64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[int64]{
				hpoint[int64](sizeB, []uint64{1, 0, 0}, 100, 100, 100, protocol(proxywatch.ProtoHTTP), direction("up")),
				hpoint[int64](sizeB, []uint64{0, 1, 0}, 5000, 5000, 5000, protocol(proxywatch.ProtoHTTP), direction("down")),
				hpoint[int64](sizeB, []uint64{0, 1, 0}, 2000, 2000, 2000, protocol(proxywatch.ProtoWebSocket), direction("up")),
				hpoint[int64](sizeB, []uint64{0, 0, 1}, 20000, 20000, 20000, protocol(proxywatch.ProtoWebSocket), direction("down")),
				hpoint[int64](sizeB, []uint64{1, 0, 0}, 700, 700, 700, protocol(proxywatch.ProtoTunnel), direction("up")),
				hpoint[int64](sizeB, []uint64{0, 1, 0}, 9000, 9000, 9000, protocol(proxywatch.ProtoTunnel), direction("down")),
			}}},
	)
	// Without a Proxy, nothing is read from one, and there are no host
	// instruments without TopHosts.
	for _, name := range []string{"proxywatch.bytes", "proxywatch.live_connections", "proxywatch.observer.dropped_events", "proxywatch.host.bytes"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s recorded without a Proxy or TopHosts", name)
		}
	}
}

func TestLogRecords(t *testing.T) {
	o, r := newObserver(t, nil, pwotel.Options{})
	for _, rec := range []proxywatch.LogRecord{
		{Seq: 1, Level: slog.LevelInfo},
		{Seq: 2, Level: slog.LevelDebug},
		{Seq: 3, Level: slog.LevelInfo},
		{Seq: 9, Level: slog.LevelError, Dropped: 5}, // 4..8 were missed
		{Seq: 10, Level: slog.LevelWarn + 2},         // between WARN and ERROR: WARN
		{Seq: 12, Level: slog.LevelWarn, Dropped: 1},
	} {
		o.ObserveLog(rec)
	}
	check(t, collect(t, r),
		counter("proxywatch.log.records", "{record}", descLogs,
			point(1, level("DEBUG")), point(2, level("INFO")), point(2, level("WARN")), point(1, level("ERROR"))),
		counter("proxywatch.log.records.dropped", "{record}", descLogsDrop, point(6)),
	)
}

func TestTopHosts(t *testing.T) {
	o, r := newObserver(t, nil, pwotel.Options{TopHosts: 2})
	for _, e := range []proxywatch.ConnEvent{
		closed(1, proxywatch.ProtoHTTP, "a:80", time.Millisecond, 10, 1000, proxywatch.EndCompleted),
		closed(2, proxywatch.ProtoTunnel, "b:443", time.Second, 1, 100, proxywatch.EndCompleted),
		closed(3, proxywatch.ProtoHTTP, "c:80", time.Millisecond, 5, 50, proxywatch.EndCompleted),     // 55 <= 101: other
		closed(4, proxywatch.ProtoHTTP, "c:80", time.Millisecond, 5, 50, proxywatch.EndUpstreamError), // 110 <= 101+12: other
	} {
		o.ObserveConn(e)
	}
	check(t, collect(t, r),
		counter("proxywatch.host.bytes", "By", descHostB,
			point(10, host("a:80"), direction("up")), point(1000, host("a:80"), direction("down")),
			point(1, host("b:443"), direction("up")), point(100, host("b:443"), direction("down")),
			point(10, host("other"), direction("up")), point(100, host("other"), direction("down"))),
		counter("proxywatch.host.connections", "{connection}", descHostC,
			point(1, host("a:80")), point(1, host("b:443")), point(2, host("other"))),
	)
	// c at 132 bytes takes b's place: b's series is no longer reported, c's
	// starts with this connection.
	o.ObserveConn(closed(5, proxywatch.ProtoHTTP, "c:80", time.Millisecond, 2, 20, proxywatch.EndCompleted))
	check(t, collect(t, r),
		counter("proxywatch.host.bytes", "By", descHostB,
			point(10, host("a:80"), direction("up")), point(1000, host("a:80"), direction("down")),
			point(2, host("c:80"), direction("up")), point(20, host("c:80"), direction("down")),
			point(10, host("other"), direction("up")), point(100, host("other"), direction("down"))),
		counter("proxywatch.host.connections", "{connection}", descHostC,
			point(1, host("a:80")), point(1, host("c:80")), point(2, host("other"))),
	)
}

func TestAttributes(t *testing.T) {
	o, r := newObserver(t, nil, pwotel.Options{Attributes: []attribute.KeyValue{attribute.String("proxy", "eu-1")}})
	o.ObserveLog(proxywatch.LogRecord{Level: slog.LevelError, Dropped: 2})
	check(t, collect(t, r),
		counter("proxywatch.log.records.dropped", "{record}", descLogsDrop, point(2, attribute.String("proxy", "eu-1"))),
	)
}

func TestCloseUnregistersCallback(t *testing.T) {
	p := proxywatch.New(nil)
	defer p.Close()
	o, r := newObserver(t, p, pwotel.Options{})
	if _, ok := collect(t, r)["proxywatch.bytes"]; !ok {
		t.Fatal("no proxywatch.bytes before Close")
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if m, ok := collect(t, r)["proxywatch.bytes"]; ok && len(m.Data.(metricdata.Sum[int64]).DataPoints) > 0 {
		t.Errorf("proxywatch.bytes still reported after Close: %+v", m)
	}
}

func TestNilMeterProviderUsesGlobal(t *testing.T) {
	// The global provider is a no-op until set; New must work with it.
	o, err := pwotel.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.ObserveConn(closed(1, proxywatch.ProtoHTTP, "a:80", time.Millisecond, 1, 2, proxywatch.EndCompleted))
	o.ObserveLog(proxywatch.LogRecord{Level: slog.LevelInfo, Dropped: 1})
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}
