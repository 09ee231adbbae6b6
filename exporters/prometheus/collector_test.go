package prometheus_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/proxywatch/proxywatch"
	pwprom "github.com/proxywatch/proxywatch/exporters/prometheus"
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

// small buckets keep the expected expositions readable.
var small = &pwprom.Options{DurationBuckets: []float64{0.1, 1}, SizeBuckets: []float64{1000, 10000}}

func compare(t *testing.T, c prometheus.Collector, want string, names ...string) {
	t.Helper()
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestConnEvents(t *testing.T) {
	c := pwprom.New(nil, small)
	c.ObserveConn(opened(1, proxywatch.ProtoHTTP, "a:80"))
	c.ObserveConn(opened(2, proxywatch.ProtoHTTP, "b:80"))
	c.ObserveConn(opened(3, proxywatch.ProtoTunnel, "c:443"))
	c.ObserveConn(closed(1, proxywatch.ProtoHTTP, "a:80", 20*time.Millisecond, 100, 5000, proxywatch.EndCompleted))
	// 2 upgraded to a WebSocket before it closed.
	c.ObserveConn(closed(2, proxywatch.ProtoWebSocket, "b:80", 3*time.Second, 2000, 20000, proxywatch.EndClientClosed))
	c.ObserveConn(closed(3, proxywatch.ProtoTunnel, "c:443", 500*time.Millisecond, 700, 9000, proxywatch.EndCompleted))
	// Unknown states are ignored.
	c.ObserveConn(proxywatch.ConnEvent{State: 99, Conn: proxywatch.ConnInfo{Protocol: proxywatch.ProtoHTTP}})

	compare(t, c, `
# HELP proxywatch_connections_opened_total Connections that entered the live set, by protocol at open.
# TYPE proxywatch_connections_opened_total counter
proxywatch_connections_opened_total{protocol="HTTP"} 2
proxywatch_connections_opened_total{protocol="HTTP-MITM"} 0
proxywatch_connections_opened_total{protocol="HTTPS-MITM"} 0
proxywatch_connections_opened_total{protocol="HTTPS-Tunnel"} 1
proxywatch_connections_opened_total{protocol="WebSocket"} 0
proxywatch_connections_opened_total{protocol="WebSocket-MITM"} 0
# HELP proxywatch_connections_closed_total Connections that ended, by protocol and end reason.
# TYPE proxywatch_connections_closed_total counter
proxywatch_connections_closed_total{protocol="HTTP",reason="completed"} 1
proxywatch_connections_closed_total{protocol="HTTPS-Tunnel",reason="completed"} 1
proxywatch_connections_closed_total{protocol="WebSocket",reason="client closed"} 1
# HELP proxywatch_connection_duration_seconds How long ended connections lived, by protocol.
# TYPE proxywatch_connection_duration_seconds histogram
proxywatch_connection_duration_seconds_bucket{protocol="HTTP",le="0.1"} 1
proxywatch_connection_duration_seconds_bucket{protocol="HTTP",le="1"} 1
proxywatch_connection_duration_seconds_bucket{protocol="HTTP",le="+Inf"} 1
proxywatch_connection_duration_seconds_sum{protocol="HTTP"} 0.02
proxywatch_connection_duration_seconds_count{protocol="HTTP"} 1
proxywatch_connection_duration_seconds_bucket{protocol="HTTPS-Tunnel",le="0.1"} 0
proxywatch_connection_duration_seconds_bucket{protocol="HTTPS-Tunnel",le="1"} 1
proxywatch_connection_duration_seconds_bucket{protocol="HTTPS-Tunnel",le="+Inf"} 1
proxywatch_connection_duration_seconds_sum{protocol="HTTPS-Tunnel"} 0.5
proxywatch_connection_duration_seconds_count{protocol="HTTPS-Tunnel"} 1
proxywatch_connection_duration_seconds_bucket{protocol="WebSocket",le="0.1"} 0
proxywatch_connection_duration_seconds_bucket{protocol="WebSocket",le="1"} 0
proxywatch_connection_duration_seconds_bucket{protocol="WebSocket",le="+Inf"} 1
proxywatch_connection_duration_seconds_sum{protocol="WebSocket"} 3
proxywatch_connection_duration_seconds_count{protocol="WebSocket"} 1
# HELP proxywatch_connection_size_bytes Bytes each ended connection carried, by protocol and direction (up: client to upstream, down: upstream to client).
# TYPE proxywatch_connection_size_bytes histogram
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTP",le="1000"} 0
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTP",le="10000"} 1
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTP",le="+Inf"} 1
proxywatch_connection_size_bytes_sum{direction="down",protocol="HTTP"} 5000
proxywatch_connection_size_bytes_count{direction="down",protocol="HTTP"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTP",le="1000"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTP",le="10000"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTP",le="+Inf"} 1
proxywatch_connection_size_bytes_sum{direction="up",protocol="HTTP"} 100
proxywatch_connection_size_bytes_count{direction="up",protocol="HTTP"} 1
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTPS-Tunnel",le="1000"} 0
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTPS-Tunnel",le="10000"} 1
proxywatch_connection_size_bytes_bucket{direction="down",protocol="HTTPS-Tunnel",le="+Inf"} 1
proxywatch_connection_size_bytes_sum{direction="down",protocol="HTTPS-Tunnel"} 9000
proxywatch_connection_size_bytes_count{direction="down",protocol="HTTPS-Tunnel"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTPS-Tunnel",le="1000"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTPS-Tunnel",le="10000"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="HTTPS-Tunnel",le="+Inf"} 1
proxywatch_connection_size_bytes_sum{direction="up",protocol="HTTPS-Tunnel"} 700
proxywatch_connection_size_bytes_count{direction="up",protocol="HTTPS-Tunnel"} 1
proxywatch_connection_size_bytes_bucket{direction="down",protocol="WebSocket",le="1000"} 0
proxywatch_connection_size_bytes_bucket{direction="down",protocol="WebSocket",le="10000"} 0
proxywatch_connection_size_bytes_bucket{direction="down",protocol="WebSocket",le="+Inf"} 1
proxywatch_connection_size_bytes_sum{direction="down",protocol="WebSocket"} 20000
proxywatch_connection_size_bytes_count{direction="down",protocol="WebSocket"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="WebSocket",le="1000"} 0
proxywatch_connection_size_bytes_bucket{direction="up",protocol="WebSocket",le="10000"} 1
proxywatch_connection_size_bytes_bucket{direction="up",protocol="WebSocket",le="+Inf"} 1
proxywatch_connection_size_bytes_sum{direction="up",protocol="WebSocket"} 2000
proxywatch_connection_size_bytes_count{direction="up",protocol="WebSocket"} 1
`, "proxywatch_connections_opened_total", "proxywatch_connections_closed_total",
		"proxywatch_connection_duration_seconds", "proxywatch_connection_size_bytes")
}

func TestLogRecords(t *testing.T) {
	c := pwprom.New(nil, nil)
	for _, r := range []proxywatch.LogRecord{
		{Seq: 1, Level: slog.LevelInfo},
		{Seq: 2, Level: slog.LevelDebug},
		{Seq: 3, Level: slog.LevelInfo},
		{Seq: 9, Level: slog.LevelError, Dropped: 5}, // 4..8 were missed
		{Seq: 10, Level: slog.LevelWarn + 2},         // between WARN and ERROR: WARN
		{Seq: 12, Level: slog.LevelWarn, Dropped: 1},
	} {
		c.ObserveLog(r)
	}
	compare(t, c, `
# HELP proxywatch_log_records_total Log records received by this exporter, by level.
# TYPE proxywatch_log_records_total counter
proxywatch_log_records_total{level="DEBUG"} 1
proxywatch_log_records_total{level="INFO"} 2
proxywatch_log_records_total{level="WARN"} 2
proxywatch_log_records_total{level="ERROR"} 1
# HELP proxywatch_log_records_dropped_total Log records this exporter missed because its observer queue was full.
# TYPE proxywatch_log_records_dropped_total counter
proxywatch_log_records_dropped_total 6
`, "proxywatch_log_records_total", "proxywatch_log_records_dropped_total")
}

func TestTopHosts(t *testing.T) {
	c := pwprom.New(nil, &pwprom.Options{TopHosts: 2})
	ev := []proxywatch.ConnEvent{
		closed(1, proxywatch.ProtoHTTP, "a:80", time.Millisecond, 10, 1000, proxywatch.EndCompleted),
		closed(2, proxywatch.ProtoTunnel, "b:443", time.Second, 1, 100, proxywatch.EndCompleted),
		closed(3, proxywatch.ProtoHTTP, "c:80", time.Millisecond, 5, 50, proxywatch.EndCompleted),     // 55 <= 101: other
		closed(4, proxywatch.ProtoHTTP, "c:80", time.Millisecond, 5, 50, proxywatch.EndUpstreamError), // 110 <= 101+12: other
		closed(5, proxywatch.ProtoHTTP, "a:80", time.Millisecond, 0, 0, proxywatch.EndClientClosed),
		closed(6, proxywatch.ProtoHTTP, "c:80", time.Millisecond, 2, 20, proxywatch.EndCompleted), // 132 > 113: takes b's label
	}
	for _, e := range ev {
		c.ObserveConn(e)
	}
	compare(t, c, `
# HELP proxywatch_host_bytes_total Bytes carried by ended connections, by host (the top hosts by bytes; the rest are "other") and direction.
# TYPE proxywatch_host_bytes_total counter
proxywatch_host_bytes_total{direction="down",host="a:80"} 1000
proxywatch_host_bytes_total{direction="up",host="a:80"} 10
proxywatch_host_bytes_total{direction="down",host="c:80"} 20
proxywatch_host_bytes_total{direction="up",host="c:80"} 2
proxywatch_host_bytes_total{direction="down",host="other"} 100
proxywatch_host_bytes_total{direction="up",host="other"} 10
# HELP proxywatch_host_connections_total Connections that ended, by host (the top hosts by bytes; the rest are "other").
# TYPE proxywatch_host_connections_total counter
proxywatch_host_connections_total{host="a:80"} 2
proxywatch_host_connections_total{host="c:80"} 1
proxywatch_host_connections_total{host="other"} 2
`, "proxywatch_host_bytes_total", "proxywatch_host_connections_total")
}

func TestNoHostLabelByDefault(t *testing.T) {
	c := pwprom.New(nil, nil)
	c.ObserveConn(closed(1, proxywatch.ProtoHTTP, "a:80", time.Millisecond, 10, 1000, proxywatch.EndCompleted))
	if n := testutil.CollectAndCount(c, "proxywatch_host_bytes_total", "proxywatch_host_connections_total", "proxywatch_host_live_connections"); n != 0 {
		t.Errorf("%d host series without TopHosts, want 0", n)
	}
}

func TestNamespaceAndConstLabels(t *testing.T) {
	c := pwprom.New(nil, &pwprom.Options{Namespace: "edge", ConstLabels: prometheus.Labels{"proxy": "eu-1"}})
	c.ObserveLog(proxywatch.LogRecord{Level: slog.LevelError, Dropped: 2})
	compare(t, c, `
# HELP edge_log_records_dropped_total Log records this exporter missed because its observer queue was full.
# TYPE edge_log_records_dropped_total counter
edge_log_records_dropped_total{proxy="eu-1"} 2
`, "edge_log_records_dropped_total")
}

// TestLint runs client_golang's promlint (the naming conventions) over every
// metric the Collector exports, with host labels on.
func TestLint(t *testing.T) {
	c := pwprom.New(nil, &pwprom.Options{TopHosts: 3})
	c.ObserveConn(opened(1, proxywatch.ProtoHTTP, "a:80"))
	c.ObserveConn(closed(1, proxywatch.ProtoHTTP, "a:80", time.Millisecond, 10, 1000, proxywatch.EndCompleted))
	c.ObserveLog(proxywatch.LogRecord{Level: slog.LevelInfo, Dropped: 1})
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestPedanticRegistry checks that every collected metric is described and
// consistent, which a pedantic registry verifies on each Gather.
func TestPedanticRegistry(t *testing.T) {
	c := pwprom.New(nil, &pwprom.Options{TopHosts: 1, ConstLabels: prometheus.Labels{"proxy": "a"}})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	c.ObserveConn(closed(1, proxywatch.ProtoHTTPSMITM, "a:443", time.Millisecond, 10, 1000, proxywatch.EndClosedByAPI))
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	// A second Collector for another proxy registers next to it when its
	// ConstLabels tell them apart.
	if err := reg.Register(pwprom.New(nil, &pwprom.Options{TopHosts: 1, ConstLabels: prometheus.Labels{"proxy": "b"}})); err != nil {
		t.Errorf("second collector with ConstLabels: %v", err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}
