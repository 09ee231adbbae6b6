package otel_test

import (
	"io"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/proxywatch/proxywatch"
	pwotel "github.com/proxywatch/proxywatch/exporters/otel"
	"github.com/proxywatch/proxywatch/internal/proxytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// livePoints returns the data points of a live-connections instrument: every
// known protocol at zero unless given in n.
func livePoints(n map[proxywatch.Protocol]int64) []metricdata.DataPoint[int64] {
	return openedPoints(n) // same protocols, same shape
}

// TestCollectAfterRealTraffic sends plain requests, a failing request and a
// CONNECT tunnel through a real Proxy, collects with the SDK's ManualReader,
// and checks every value against what the clients sent and received and
// against the Proxy's own accounts.
func TestCollectAfterRealTraffic(t *testing.T) {
	const (
		respSize = 10_000
		postSize = 3_000
		tunSize  = 70_000
	)
	web := proxytest.Upstream(t, respSize)
	echo := proxytest.Echo(t)
	dead := proxytest.ClosedPort(t)
	webHost, echoHost := web.Listener.Addr().String(), echo.Addr().String()

	p := proxywatch.New(&proxywatch.Options{SampleInterval: 50 * time.Millisecond})
	sizeB := []float64{1000, 10_000, 100_000}
	o, reader := newObserver(t, p, pwotel.Options{TopHosts: 2, SizeBuckets: sizeB})
	logs := &proxytest.LogCounter{}
	stop := p.Observe(proxytest.Observer{ConnObserver: o, LogObserver: proxywatch.MultiLogObserver(o, logs)})
	pu := proxytest.Serve(t, p)
	hc := proxytest.Client(t, pu)

	// Before any traffic: every known series at zero.
	check(t, collect(t, reader),
		counter("proxywatch.bytes", "By", descBytes, point(0, direction("up")), point(0, direction("down"))),
		gauge("proxywatch.live_connections", "{connection}", descLive, livePoints(nil)...),
		counter("proxywatch.connections.opened", "{connection}", descOpened, openedPoints(nil)...),
		counter("proxywatch.observer.dropped_events", "{event}", descDropped, point(0)),
	)

	// Phase 1: five GETs and two POSTs to web, and one GET to a dead port.
	proxytest.Exchanges(t, hc, web.URL, 5, 2, postSize, respSize)
	proxytest.Get(t, hc, "http://"+dead+"/")
	proxytest.WaitIdle(t, p)
	// What the failed request counts is the core's business; take it from
	// History.
	errConn := proxytest.FailedConn(t, p, dead)
	errUp, errDown := int64(errConn.Up), int64(errConn.Down)
	// The observer hears of connections on its own goroutine, after the
	// Proxy ended them: wait until it has the failed request, the last one,
	// and so every one before it.
	proxytest.WaitFor(t, "the observer to hear of the failed request", func() bool {
		g, _ := collect(t, reader)["proxywatch.host.live_connections"].Data.(metricdata.Sum[int64])
		for _, dp := range g.DataPoints {
			if v, ok := dp.Attributes.Value("host"); ok && v.AsString() == dead {
				return true
			}
		}
		return false
	})

	// Phase 2: a tunnel to the echo server, collected while it is open.
	tun := proxytest.Connect(t, pu, echoHost)
	go func() { _, _ = io.WriteString(tun, strings.Repeat("t", tunSize)) }()
	if _, err := io.ReadFull(tun, make([]byte, tunSize)); err != nil {
		t.Fatal(err)
	}
	wantUp := 2*postSize + tunSize + errUp
	wantDown := 7*respSize + tunSize + errDown
	proxytest.WaitFor(t, "the tunnel's bytes in Stats", func() bool {
		st := p.Stats()
		up, down := st.Up, st.Down
		return int64(up) == wantUp && int64(down) == wantDown
	})
	check(t, collect(t, reader),
		counter("proxywatch.bytes", "By", descBytes, point(wantUp, direction("up")), point(wantDown, direction("down"))),
		gauge("proxywatch.live_connections", "{connection}", descLive, livePoints(map[proxywatch.Protocol]int64{proxywatch.ProtoTunnel: 1})...),
		// The tunnel's host has no label yet: it has not ended a connection.
		gauge("proxywatch.host.live_connections", "{connection}", descHostLive,
			point(0, host(webHost)), point(0, host(dead)), point(1, host("other"))),
	)
	if err := tun.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, tun); err != nil {
		t.Fatal(err)
	}
	tun.Close()
	proxytest.WaitIdle(t, p)
	// Every closed event is queued now; stop delivers them, and then the log
	// counts cannot change between the LogCounter's snapshot and the reader's.
	stop()

	if st := p.Stats(); int64(st.Up) != wantUp || int64(st.Down) != wantDown {
		t.Fatalf("Stats() totals = %d/%d, want %d/%d", st.Up, st.Down, wantUp, wantDown)
	}
	levels, _, _ := logs.Snapshot()
	if levels["INFO"] == 0 || levels["WARN"]+levels["ERROR"] == 0 {
		t.Errorf("want INFO records and a WARN or ERROR one (the dead upstream), got %v", levels)
	}
	var logPoints []metricdata.DataPoint[int64]
	for _, l := range proxytest.Levels {
		logPoints = append(logPoints, point(int64(levels[l]), level(l)))
	}

	got := collect(t, reader)
	check(t, got,
		counter("proxywatch.bytes", "By", descBytes, point(wantUp, direction("up")), point(wantDown, direction("down"))),
		counter("proxywatch.connections.opened", "{connection}", descOpened,
			openedPoints(map[proxywatch.Protocol]int64{proxywatch.ProtoHTTP: 8, proxywatch.ProtoTunnel: 1})...),
		counter("proxywatch.connections.closed", "{connection}", descClosed,
			point(7, protocol(proxywatch.ProtoHTTP), reason(proxywatch.EndCompleted)),
			point(1, protocol(proxywatch.ProtoHTTP), reason(proxywatch.EndUpstreamError)),
			point(1, protocol(proxywatch.ProtoTunnel), reason(proxywatch.EndCompleted))),
		gauge("proxywatch.live_connections", "{connection}", descLive, livePoints(nil)...),
		metricdata.Metrics{Name: "proxywatch.connection.size", Unit: "By", Description: descSize,
			Data: metricdata.Histogram[int64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[int64]{
				hpoint[int64](sizeB, []uint64{6, 2, 0, 0}, min(0, errUp), max(postSize, errUp), 2*postSize+errUp,
					protocol(proxywatch.ProtoHTTP), direction("up")),
				hpoint[int64](sizeB, []uint64{1, 7, 0, 0}, errDown, respSize, 7*respSize+errDown,
					protocol(proxywatch.ProtoHTTP), direction("down")),
				hpoint[int64](sizeB, []uint64{0, 0, 1, 0}, tunSize, tunSize, tunSize, protocol(proxywatch.ProtoTunnel), direction("up")),
				hpoint[int64](sizeB, []uint64{0, 0, 1, 0}, tunSize, tunSize, tunSize, protocol(proxywatch.ProtoTunnel), direction("down")),
			}}},
		// web took the first host label and the dead port the second; the
		// tunnel's 140000 bytes then took the dead port's, so its series is
		// gone and "other" never counted anything.
		counter("proxywatch.host.bytes", "By", descHostB,
			point(2*postSize, host(webHost), direction("up")), point(7*respSize, host(webHost), direction("down")),
			point(tunSize, host(echoHost), direction("up")), point(tunSize, host(echoHost), direction("down")),
			point(0, host("other"), direction("up")), point(0, host("other"), direction("down"))),
		counter("proxywatch.host.connections", "{connection}", descHostC,
			point(7, host(webHost)), point(1, host(echoHost)), point(0, host("other"))),
		gauge("proxywatch.host.live_connections", "{connection}", descHostLive,
			point(0, host(webHost)), point(0, host(echoHost)), point(0, host("other"))),
		counter("proxywatch.log.records", "{record}", descLogs, logPoints...),
		counter("proxywatch.observer.dropped_events", "{event}", descDropped, point(0)),
	)
	if _, ok := got["proxywatch.log.records.dropped"]; ok {
		t.Error("proxywatch.log.records.dropped recorded although nothing was dropped")
	}

	// Durations are not known in advance, but their sums are: the Proxy's.
	durations := map[string]float64{}
	counts := map[string]uint64{}
	for _, ci := range p.History() {
		durations[string(ci.Protocol)] += ci.End.Sub(ci.Start).Seconds()
		counts[string(ci.Protocol)]++
	}
	dur := got["proxywatch.connection.duration"].Data.(metricdata.Histogram[float64])
	if len(dur.DataPoints) != len(counts) {
		t.Errorf("%d duration series, want %d", len(dur.DataPoints), len(counts))
	}
	for _, dp := range dur.DataPoints {
		v, _ := dp.Attributes.Value("protocol")
		proto := v.AsString()
		if dp.Count != counts[proto] || math.Abs(dp.Sum-durations[proto]) > 1e-9 {
			t.Errorf("duration{%s}: count %d sum %g, want %d and %g", proto, dp.Count, dp.Sum, counts[proto], durations[proto])
		}
	}
}

// TestDroppedLogRecords blocks the exporter's observer while the proxy logs,
// so that its one-slot queue overflows, and checks that the records it missed
// are counted exactly.
func TestDroppedLogRecords(t *testing.T) {
	web := proxytest.Upstream(t, 100)
	p := proxywatch.New(&proxywatch.Options{ObserverQueue: 1})
	o, reader := newObserver(t, p, pwotel.Options{})
	logs := &proxytest.LogCounter{}
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	blocker := proxywatch.LogObserverFunc(func(proxywatch.LogRecord) { <-release })
	stop := p.Observe(proxywatch.MultiLogObserver(blocker, o, logs))
	hc := proxytest.Client(t, proxytest.Serve(t, p))

	for range 20 {
		proxytest.Get(t, hc, web.URL)
	}
	if p.Stats().Dropped == 0 {
		t.Fatal("no record dropped while the observer was blocked")
	}
	once.Do(func() { close(release) })
	proxytest.WaitIdle(t, p)
	logs.WaitDropsMark(t, p)
	stop() // delivers what is queued: the counts below are final
	levels, _, dropped := logs.Snapshot()
	var logPoints []metricdata.DataPoint[int64]
	for _, l := range proxytest.Levels {
		logPoints = append(logPoints, point(int64(levels[l]), level(l)))
	}
	got := collect(t, reader)
	check(t, got,
		counter("proxywatch.log.records", "{record}", descLogs, logPoints...),
		counter("proxywatch.log.records.dropped", "{record}", descLogsDrop, point(int64(dropped))),
	)
	// Stats.Dropped may still grow (a mark dropped while draining), so the
	// collected value must lie between what this observer was told and what
	// the Proxy says after the collection.
	sum := got["proxywatch.observer.dropped_events"].Data.(metricdata.Sum[int64])
	if len(sum.DataPoints) != 1 {
		t.Fatalf("observer.dropped_events: %+v", sum)
	}
	if v, st := sum.DataPoints[0].Value, p.Stats(); v < int64(dropped) || v > int64(st.Dropped) {
		t.Errorf("observer.dropped_events = %d, want between %d and Stats.Dropped %d", v, dropped, st.Dropped)
	}
}
