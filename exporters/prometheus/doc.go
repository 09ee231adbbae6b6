// Package prometheus exports the metrics of a proxywatch.Proxy to Prometheus
// (github.com/prometheus/client_golang), for people who run many proxies and
// watch them from the monitoring they already have.
//
// It is its own Go module, so that programs using proxywatch without
// Prometheus do not depend on client_golang. Its package name clashes with
// client_golang's, so import it under another name:
//
//	import (
//		"github.com/prometheus/client_golang/prometheus"
//		"github.com/prometheus/client_golang/prometheus/promhttp"
//		pwprom "github.com/proxywatch/proxywatch/exporters/prometheus"
//	)
//
//	p := proxywatch.New(nil)
//	c := pwprom.New(p, nil)
//	stop := p.Observe(c) // the event-driven metrics
//	defer stop()
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(c)
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The Collector is an ordinary observer (proxywatch.ConnObserver and
// proxywatch.LogObserver) with its own queue and goroutine in the Proxy, so it
// never slows the proxy down; what it cannot read from events it reads from
// the Proxy when scraped.
//
// # Metrics
//
// Names follow the Prometheus conventions: base units (seconds, bytes),
// counters end in _total. "up" is client to upstream, "down" upstream to
// client, as in proxywatch.
//
// Read from the Proxy at scrape time, exact whatever happened to events:
//
//	proxywatch_bytes_total{direction}                 counter   Proxy.Stats: Up and Down
//	proxywatch_live_connections{protocol}             gauge     Proxy.Connections, by protocol
//	proxywatch_observer_dropped_events_total          counter   Stats.Dropped: events any observer missed
//
// Counted from connection events and log records:
//
//	proxywatch_connections_opened_total{protocol}             counter
//	proxywatch_connections_closed_total{protocol,reason}      counter    reason is the EndReason
//	proxywatch_connection_duration_seconds{protocol}          histogram  of ended connections
//	proxywatch_connection_size_bytes{protocol,direction}      histogram  final Up and Down of ended connections
//	proxywatch_log_records_total{level}                       counter    DEBUG, INFO, WARN, ERROR
//	proxywatch_log_records_dropped_total                      counter    records this exporter missed
//
// A connection counts under the protocol it had when the event was sent. A
// plain request that upgrades to a WebSocket opens as "HTTP" and closes as
// "WebSocket", so opened minus closed per protocol is not the live count: use
// proxywatch_live_connections for that. The series of the known protocols and
// levels exist from the start, at zero.
//
// The event-driven counters miss what the Collector's observer queue could
// not hold (proxywatch.Options.ObserverQueue, 4096 by default), which does not
// happen unless the process is starved of CPU; proxywatch_observer_dropped_events_total
// and proxywatch_log_records_dropped_total say when it did.
//
// # Per-host metrics
//
// Hosts come from the network, so a host label is opt-in and bounded:
// Options.TopHosts = N adds
//
//	proxywatch_host_bytes_total{host,direction}    counter  final bytes of ended connections
//	proxywatch_host_connections_total{host}        counter  ended connections
//	proxywatch_host_live_connections{host}         gauge    live connections
//
// with at most N host values plus "other". The host is the "host:port" the
// client asked for. The N hosts are those that carried the most bytes since
// the Collector was made (approximately, in bounded memory). While fewer than
// N hosts have a label, each new host gets one; after that, a host takes over
// the label of the lightest labelled host once it has carried more than that
// host plus an eighth. Counters must never go down, so a host's counters start
// at zero when it gets its label, what it carried before stays in "other", and
// a host that loses its label loses its series. Sums across all series (for
// example sum(rate(proxywatch_host_bytes_total[5m]))) stay right throughout.
//
// Per-host bytes are counted when a connection ends, so a long tunnel shows up
// when it closes; proxywatch_bytes_total is the live, exact total.
//
// # Several proxies
//
// To export several Proxies from one process, give each Collector
// Options.ConstLabels such as {"proxy": "eu-1"}; to export one Proxy from
// several processes, let Prometheus add its instance label as usual.
package prometheus
