package prometheus_test

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/proxywatch/proxywatch"
	pwprom "github.com/proxywatch/proxywatch/exporters/prometheus"
	"github.com/proxywatch/proxywatch/internal/proxytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scrape GETs the metrics endpoint and parses it.
func scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels are
// exactly labels ("k=v" pairs), or fails.
func value(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s in the scrape", name)
	}
	want := strings.Join(labels, ",")
	for _, m := range f.GetMetric() {
		var got []string
		for _, lp := range m.GetLabel() {
			got = append(got, lp.GetName()+"="+lp.GetValue())
		}
		sort.Strings(got)
		if strings.Join(got, ",") != want {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no sample %s{%s} in the scrape", name, want)
	return 0
}

func scrapeCompare(t testing.TB, url, want string, names ...string) {
	t.Helper()
	if err := testutil.ScrapeAndCompare(url, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// TestScrapeAfterRealTraffic sends plain requests, a failing request and a
// CONNECT tunnel through a real Proxy, scrapes the real /metrics endpoint, and
// checks every value against what the clients sent and received and against
// the Proxy's own accounts.
func TestScrapeAfterRealTraffic(t *testing.T) {
	const (
		respSize = 10_000
		postSize = 3_000
		tunSize  = 70_000
	)
	web := proxytest.Upstream(t, respSize)
	echo := proxytest.Echo(t)
	dead := proxytest.ClosedPort(t)

	p := proxywatch.New(&proxywatch.Options{SampleInterval: 50 * time.Millisecond})
	c := pwprom.New(p, &pwprom.Options{
		TopHosts:    2,
		SizeBuckets: []float64{1000, 10_000, 100_000},
	})
	logs := &proxytest.LogCounter{}
	stop := p.Observe(proxytest.Observer{ConnObserver: c, LogObserver: proxywatch.MultiLogObserver(c, logs)})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	metrics := ms.URL + "/metrics"
	pu := proxytest.Serve(t, p)
	hc := proxytest.Client(t, pu)

	// Before any traffic: every known series at zero.
	scrapeCompare(t, metrics, `
# HELP proxywatch_bytes_total Bytes the proxy carried since it was created, by direction (up: client to upstream, down: upstream to client); equals Proxy.Stats().Up and .Down.
# TYPE proxywatch_bytes_total counter
proxywatch_bytes_total{direction="down"} 0
proxywatch_bytes_total{direction="up"} 0
# HELP proxywatch_live_connections Connections in the live set, by protocol.
# TYPE proxywatch_live_connections gauge
proxywatch_live_connections{protocol="HTTP"} 0
proxywatch_live_connections{protocol="HTTP-MITM"} 0
proxywatch_live_connections{protocol="HTTPS-MITM"} 0
proxywatch_live_connections{protocol="HTTPS-Tunnel"} 0
proxywatch_live_connections{protocol="WebSocket"} 0
proxywatch_live_connections{protocol="WebSocket-MITM"} 0
`, "proxywatch_bytes_total", "proxywatch_live_connections")

	// Phase 1: five GETs and two POSTs to web, and one GET to a dead port.
	proxytest.Exchanges(t, hc, web.URL, 5, 2, postSize, respSize)
	resp := proxytest.Get(t, hc, "http://"+dead+"/")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("GET to a dead port: %s, want goproxy's 500", resp.Status)
	}
	proxytest.WaitIdle(t, p)
	// What the failed request counts is the core's business (the error page
	// goproxy writes did not come from the upstream); take it from History.
	errConn := proxytest.FailedConn(t, p, dead)
	errUp, errDown := errConn.Up, errConn.Down
	// The Collector hears of connections on its observer's goroutine, after
	// the Proxy ended them: wait until it has the failed request, the last
	// one, and so every one before it.
	proxytest.WaitFor(t, "the Collector to hear of the failed request", func() bool {
		for _, m := range scrape(t, metrics)["proxywatch_host_live_connections"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "host" && l.GetValue() == dead {
					return true
				}
			}
		}
		return false
	})

	// Phase 2: a tunnel to the echo server, scraped while it is open.
	tun := proxytest.Connect(t, pu, echo.Addr().String())
	msg := strings.Repeat("t", tunSize)
	go func() { _, _ = io.WriteString(tun, msg) }()
	if _, err := io.ReadFull(tun, make([]byte, tunSize)); err != nil {
		t.Fatal(err)
	}
	wantUp := 2*postSize + tunSize + errUp
	wantDown := 7*respSize + tunSize + errDown // untyped constants: uint64
	proxytest.WaitFor(t, "the tunnel's bytes in Stats", func() bool {
		st := p.Stats()
		up, down := st.Up, st.Down
		if up != wantUp || down != wantDown {
		}
		return up == wantUp && down == wantDown
	})
	scrapeCompare(t, metrics, fmt.Sprintf(`
# HELP proxywatch_bytes_total Bytes the proxy carried since it was created, by direction (up: client to upstream, down: upstream to client); equals Proxy.Stats().Up and .Down.
# TYPE proxywatch_bytes_total counter
proxywatch_bytes_total{direction="down"} %d
proxywatch_bytes_total{direction="up"} %d
# HELP proxywatch_live_connections Connections in the live set, by protocol.
# TYPE proxywatch_live_connections gauge
proxywatch_live_connections{protocol="HTTP"} 0
proxywatch_live_connections{protocol="HTTP-MITM"} 0
proxywatch_live_connections{protocol="HTTPS-MITM"} 0
proxywatch_live_connections{protocol="HTTPS-Tunnel"} 1
proxywatch_live_connections{protocol="WebSocket"} 0
proxywatch_live_connections{protocol="WebSocket-MITM"} 0
# HELP proxywatch_host_live_connections Connections in the live set, by host (the top hosts by bytes; the rest are "other").
# TYPE proxywatch_host_live_connections gauge
proxywatch_host_live_connections{host=%q} 0
proxywatch_host_live_connections{host=%q} 0
proxywatch_host_live_connections{host="other"} 1
`, wantDown, wantUp, web.Listener.Addr().String(), dead),
		"proxywatch_bytes_total", "proxywatch_live_connections", "proxywatch_host_live_connections")
	if err := tun.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, tun); err != nil {
		t.Fatal(err)
	}
	tun.Close()
	proxytest.WaitIdle(t, p)

	// The closed events are queued by now, so once stop has delivered what
	// was queued, the Collector has them all, and its log counts cannot
	// change between the logCounter's snapshot and the scrape.
	stop()

	// The Proxy's own account of each connection.
	hist := p.History()
	if len(hist) != 9 {
		t.Fatalf("History has %d connections, want 9", len(hist))
	}
	durations := map[proxywatch.Protocol]float64{}
	for _, ci := range hist {
		durations[ci.Protocol] += ci.End.Sub(ci.Start).Seconds()
	}
	if st := p.Stats(); st.Up != wantUp || st.Down != wantDown {
		t.Fatalf("Stats() totals = %d/%d, want %d/%d", st.Up, st.Down, wantUp, wantDown)
	}

	// Hosts with TopHosts 2: web took the first label and the dead port the
	// second; then the tunnel's 140000 bytes took the dead port's label, so
	// its series is gone and "other" never counted anything.
	webHost := web.Listener.Addr().String()
	echoHost := echo.Addr().String()
	levels, _, _ := logs.Snapshot()
	if levels["INFO"] == 0 || levels["WARN"]+levels["ERROR"] == 0 {
		t.Errorf("want INFO records and a WARN or ERROR one (the dead upstream), got %v", levels)
	}
	scrapeCompare(t, metrics, fmt.Sprintf(`
# HELP proxywatch_bytes_total Bytes the proxy carried since it was created, by direction (up: client to upstream, down: upstream to client); equals Proxy.Stats().Up and .Down.
# TYPE proxywatch_bytes_total counter
proxywatch_bytes_total{direction="down"} %[1]d
proxywatch_bytes_total{direction="up"} %[2]d
# HELP proxywatch_connections_opened_total Connections that entered the live set, by protocol at open.
# TYPE proxywatch_connections_opened_total counter
proxywatch_connections_opened_total{protocol="HTTP"} 8
proxywatch_connections_opened_total{protocol="HTTP-MITM"} 0
proxywatch_connections_opened_total{protocol="HTTPS-MITM"} 0
proxywatch_connections_opened_total{protocol="HTTPS-Tunnel"} 1
proxywatch_connections_opened_total{protocol="WebSocket"} 0
proxywatch_connections_opened_total{protocol="WebSocket-MITM"} 0
# HELP proxywatch_connections_closed_total Connections that ended, by protocol and end reason.
# TYPE proxywatch_connections_closed_total counter
proxywatch_connections_closed_total{protocol="HTTP",reason="completed"} 7
proxywatch_connections_closed_total{protocol="HTTP",reason="upstream error"} 1
proxywatch_connections_closed_total{protocol="HTTPS-Tunnel",reason="completed"} 1
# HELP proxywatch_live_connections Connections in the live set, by protocol.
# TYPE proxywatch_live_connections gauge
proxywatch_live_connections{protocol="HTTP"} 0
proxywatch_live_connections{protocol="HTTP-MITM"} 0
proxywatch_live_connections{protocol="HTTPS-MITM"} 0
proxywatch_live_connections{protocol="HTTPS-Tunnel"} 0
proxywatch_live_connections{protocol="WebSocket"} 0
proxywatch_live_connections{protocol="WebSocket-MITM"} 0
# HELP proxywatch_connection_size_bytes Bytes each ended connection carried, by protocol and direction (up: client to upstream, down: upstream to client).
# TYPE proxywatch_connection_size_bytes histogram
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTP",le="1000"} 1
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTP",le="10000"} 8
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTP",le="100000"} 8
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTP",le="+Inf"} 8
proxywatch_connection_size_bytes_sum{direction="down",protocol="HTTP"} %[3]d
proxywatch_connection_size_bytes_count{direction="down",protocol="HTTP"} 8
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTP",le="1000"} 6
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTP",le="10000"} 8
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTP",le="100000"} 8
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTP",le="+Inf"} 8
proxywatch_connection_size_bytes_sum{direction="up",protocol="HTTP"} %[10]d
proxywatch_connection_size_bytes_count{direction="up",protocol="HTTP"} 8
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTPS-Tunnel",le="1000"} 0
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTPS-Tunnel",le="10000"} 0
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTPS-Tunnel",le="100000"} 1
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTPS-Tunnel",le="+Inf"} 1
proxywatch_connection_size_bytes_sum{direction="down",protocol="HTTPS-Tunnel"} 70000
proxywatch_connection_size_bytes_count{direction="down",protocol="HTTPS-Tunnel"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTPS-Tunnel",le="1000"} 0
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTPS-Tunnel",le="10000"} 0
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTPS-Tunnel",le="100000"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTPS-Tunnel",le="+Inf"} 1
proxywatch_connection_size_bytes_sum{direction="up",protocol="HTTPS-Tunnel"} 70000
proxywatch_connection_size_bytes_count{direction="up",protocol="HTTPS-Tunnel"} 1
# HELP proxywatch_host_bytes_total Bytes carried by ended connections, by host (the top hosts by bytes; the rest are "other") and direction.
# TYPE proxywatch_host_bytes_total counter
proxywatch_host_bytes_total{direction="down",host=%[4]q} 70000
proxywatch_host_bytes_total{direction="up",host=%[4]q} 6000
proxywatch_host_bytes_total{direction="down",host=%[5]q} 70000
proxywatch_host_bytes_total{direction="up",host=%[5]q} 70000
proxywatch_host_bytes_total{direction="down",host="other"} 0
proxywatch_host_bytes_total{direction="up",host="other"} 0
# HELP proxywatch_host_connections_total Connections that ended, by host (the top hosts by bytes; the rest are "other").
# TYPE proxywatch_host_connections_total counter
proxywatch_host_connections_total{host=%[4]q} 7
proxywatch_host_connections_total{host=%[5]q} 1
proxywatch_host_connections_total{host="other"} 0
# HELP proxywatch_log_records_total Log records received by this exporter, by level.
# TYPE proxywatch_log_records_total counter
proxywatch_log_records_total{level="DEBUG"} %[6]d
proxywatch_log_records_total{level="INFO"} %[7]d
proxywatch_log_records_total{level="WARN"} %[8]d
proxywatch_log_records_total{level="ERROR"} %[9]d
# HELP proxywatch_log_records_dropped_total Log records this exporter missed because its observer queue was full.
# TYPE proxywatch_log_records_dropped_total counter
proxywatch_log_records_dropped_total 0
# HELP proxywatch_observer_dropped_events_total Observer events (traffic samples, connection events, log records) the proxy dropped because an observer, any observer, did not keep up.
# TYPE proxywatch_observer_dropped_events_total counter
proxywatch_observer_dropped_events_total 0
`, wantDown, wantUp, 7*respSize+errDown, webHost, echoHost,
		levels["DEBUG"], levels["INFO"], levels["WARN"], levels["ERROR"], 2*postSize+errUp),
		"proxywatch_bytes_total", "proxywatch_connections_opened_total", "proxywatch_connections_closed_total",
		"proxywatch_live_connections", "proxywatch_connection_size_bytes", "proxywatch_host_bytes_total",
		"proxywatch_host_connections_total", "proxywatch_log_records_total", "proxywatch_log_records_dropped_total",
		"proxywatch_observer_dropped_events_total")

	// Durations are not known in advance, but their sums are: the Proxy's.
	fams := scrape(t, metrics)
	for _, m := range fams["proxywatch_connection_duration_seconds"].GetMetric() {
		proto := proxywatch.Protocol(m.GetLabel()[0].GetValue())
		h := m.GetHistogram()
		wantCount := map[proxywatch.Protocol]uint64{proxywatch.ProtoHTTP: 8, proxywatch.ProtoTunnel: 1}[proto]
		if h.GetSampleCount() != wantCount || math.Abs(h.GetSampleSum()-durations[proto]) > 1e-9 {
			t.Errorf("duration{%s}: count %d sum %g, want %d and %g", proto, h.GetSampleCount(), h.GetSampleSum(), wantCount, durations[proto])
		}
		delete(durations, proto)
	}
	if len(durations) != 0 {
		t.Errorf("no duration histogram for %v", durations)
	}
	// The byte totals are the Proxy's Stats, exactly.
	st := p.Stats()
	up, down := st.Up, st.Down
	if got := value(t, fams, "proxywatch_bytes_total", "direction=up"); got != float64(up) {
		t.Errorf("bytes_total{up} = %v, Stats up = %d", got, up)
	}
	if got := value(t, fams, "proxywatch_bytes_total", "direction=down"); got != float64(down) {
		t.Errorf("bytes_total{down} = %v, Stats down = %d", got, down)
	}
}

// TestDroppedLogRecords blocks the exporter's observer while the proxy logs,
// so that its one-slot queue overflows, and checks that the records it missed
// are counted exactly: what it received plus what it was told it missed is
// every record the Proxy accepted before the last one.
func TestDroppedLogRecords(t *testing.T) {
	web := proxytest.Upstream(t, 100)
	p := proxywatch.New(&proxywatch.Options{ObserverQueue: 1})
	c := pwprom.New(p, nil)
	logs := &proxytest.LogCounter{}
	release := make(chan struct{})
	var once sync.Once
	blocker := proxywatch.LogObserverFunc(func(proxywatch.LogRecord) { <-release })
	stop := p.Observe(proxywatch.MultiLogObserver(blocker, c, logs))
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
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
	levels, received, dropped := logs.Snapshot()
	fams := scrape(t, ms.URL)
	if got := value(t, fams, "proxywatch_log_records_dropped_total"); got != float64(dropped) {
		t.Errorf("log_records_dropped_total = %v, want %d", got, dropped)
	}
	var sum float64
	for _, l := range []string{"DEBUG", "INFO", "WARN", "ERROR"} {
		got := value(t, fams, "proxywatch_log_records_total", "level="+l)
		if got != float64(levels[l]) {
			t.Errorf("log_records_total{%s} = %v, want %d", l, got, levels[l])
		}
		sum += got
	}
	if sum != float64(received) {
		t.Errorf("sum of log_records_total = %v, want %d", sum, received)
	}
	// Stats.Dropped may still grow (a mark dropped while draining), so it is
	// read after the scrape and must be at least what the scrape showed.
	got := value(t, fams, "proxywatch_observer_dropped_events_total")
	if st := p.Stats(); got < float64(dropped) || got > float64(st.Dropped) {
		t.Errorf("observer_dropped_events_total = %v, want between %d and Stats.Dropped %d", got, dropped, st.Dropped)
	}
}

// TestWebSocketUpgrade checks what the package documentation says of a plain
// request that upgrades: it opens as HTTP, is live as WebSocket, and closes as
// WebSocket, with its bytes in the WebSocket size histograms.
func TestWebSocketUpgrade(t *testing.T) {
	ws := proxytest.UpgradeEcho(t)
	p := proxywatch.New(nil)
	c := pwprom.New(p, &pwprom.Options{SizeBuckets: []float64{1000, 10_000}})
	stop := p.Observe(c)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	pu := proxytest.Serve(t, p)

	conn, br := proxytest.Upgrade(t, pu, ws.URL+"/ws")
	proxytest.WaitFor(t, "the WebSocket protocol", func() bool {
		cs := p.Connections()
		return len(cs) == 1 && cs[0].Protocol == proxywatch.ProtoWebSocket
	})
	const msgSize = 4321
	if _, err := io.WriteString(conn, strings.Repeat("w", msgSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(br, make([]byte, msgSize)); err != nil {
		t.Fatal(err)
	}
	// Events reach observers asynchronously (in batches): wait for the
	// opened event before judging the counters.
	var fams map[string]*dto.MetricFamily
	proxytest.WaitFor(t, "the opened event", func() bool {
		fams = scrape(t, ms.URL)
		return value(t, fams, "proxywatch_connections_opened_total", "protocol=HTTP") == 1
	})
	if got := value(t, fams, "proxywatch_connections_opened_total", "protocol=WebSocket"); got != 0 {
		t.Errorf("opened{WebSocket} = %v, want 0", got)
	}
	if got := value(t, fams, "proxywatch_live_connections", "protocol=WebSocket"); got != 1 {
		t.Errorf("live{WebSocket} = %v, want 1", got)
	}
	if got := value(t, fams, "proxywatch_live_connections", "protocol=HTTP"); got != 0 {
		t.Errorf("live{HTTP} = %v, want 0", got)
	}

	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, br)
	conn.Close()
	proxytest.WaitIdle(t, p)
	stop()
	hist := p.History()
	if len(hist) != 1 || hist[0].Protocol != proxywatch.ProtoWebSocket {
		t.Fatalf("History = %+v, want one WebSocket", hist)
	}
	ci := hist[0]
	// After the 101, the bytes on the wire are counted: what the client sent
	// and what came back.
	if ci.Up != msgSize || ci.Down != msgSize || ci.EndReason != proxywatch.EndCompleted {
		t.Errorf("WebSocket up/down = %d/%d (%s), want %d each, completed", ci.Up, ci.Down, ci.EndReason, msgSize)
	}
	upTo := func(n uint64, le uint64) int {
		if n <= le {
			return 1
		}
		return 0
	}
	var want strings.Builder
	fmt.Fprintf(&want, `
# HELP proxywatch_connections_closed_total Connections that ended, by protocol and end reason.
# TYPE proxywatch_connections_closed_total counter
proxywatch_connections_closed_total{protocol="WebSocket",reason=%q} 1
# HELP proxywatch_connection_size_bytes Bytes each ended connection carried, by protocol and direction (up: client to upstream, down: upstream to client).
# TYPE proxywatch_connection_size_bytes histogram
`, ci.EndReason)
	for _, d := range []struct {
		dir string
		n   uint64
	}{{"down", ci.Down}, {"up", ci.Up}} {
		fmt.Fprintf(&want, `proxywatch_connection_size_bytes_bucket{direction=%[1]q,protocol="WebSocket",le="1000"} %[2]d
proxywatch_connection_size_bytes_bucket{direction=%[1]q,protocol="WebSocket",le="10000"} %[3]d
proxywatch_connection_size_bytes_bucket{direction=%[1]q,protocol="WebSocket",le="+Inf"} 1
proxywatch_connection_size_bytes_sum{direction=%[1]q,protocol="WebSocket"} %[4]d
proxywatch_connection_size_bytes_count{direction=%[1]q,protocol="WebSocket"} 1
`, d.dir, upTo(d.n, 1000), upTo(d.n, 10_000), d.n)
	}
	scrapeCompare(t, ms.URL, want.String(), "proxywatch_connections_closed_total", "proxywatch_connection_size_bytes")
}
