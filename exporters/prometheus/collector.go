package prometheus

import (
	"github.com/proxywatch/proxywatch/exporters/internal/live"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/exporters/internal/hosttop"
)

// DefaultDurationBuckets are the upper bounds, in seconds, of the connection
// duration histogram when Options.DurationBuckets is nil. They span a fast
// plain-HTTP exchange (a millisecond) to a tunnel kept open for an hour.
var DefaultDurationBuckets = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 1800, 3600}

// DefaultSizeBuckets are the upper bounds, in bytes, of the connection size
// histogram when Options.SizeBuckets is nil: powers of four from 256 B to 1 GiB.
var DefaultSizeBuckets = prom.ExponentialBuckets(256, 4, 12)

// Options configures a Collector. The zero value (or a nil *Options) exports
// every metric under the "proxywatch" namespace, with the default buckets and
// no host label.
type Options struct {
	// Namespace is the first part of every metric name. Empty means
	// "proxywatch".
	Namespace string

	// ConstLabels are added to every metric, to tell apart several proxies
	// registered in one registry (for example {"proxy": "eu-1"}). They must
	// not use the names of the Collector's own labels (protocol, reason,
	// direction, level, host).
	ConstLabels prom.Labels

	// DurationBuckets and SizeBuckets are the histogram bucket upper bounds,
	// in seconds and in bytes. Nil means DefaultDurationBuckets and
	// DefaultSizeBuckets.
	DurationBuckets []float64
	SizeBuckets     []float64

	// TopHosts, when positive, adds the per-host metrics, with a host label
	// for at most TopHosts hosts (the ones that carried the most bytes) and
	// "other" for the rest: TopHosts+1 values at most, however many hosts the
	// proxy sees. Zero (the default) exports no host label at all, since
	// labels that come from the network must have a bound. See the package
	// documentation (# Per-host metrics) for how hosts are chosen.
	TopHosts int
}

// Collector is a prometheus.Collector of one Proxy's metrics, and the
// proxywatch observer that feeds the event-driven ones. Make it with New,
// register it with a prometheus.Registerer, and pass it to Proxy.Observe.
//
// Its Observe methods do a few map lookups and atomic adds, so they keep up
// with any proxy; Collect reads the Proxy's counters and live connections.
// All methods are safe for concurrent use.
type Collector struct {
	p *proxywatch.Proxy

	opened      *prom.CounterVec
	closed      *prom.CounterVec
	duration    *prom.HistogramVec
	size        *prom.HistogramVec
	logs        *prom.CounterVec
	logsDropped prom.Counter

	bytes, live, dropped *prom.Desc

	hosts                          *hosttop.Table // nil without Options.TopHosts
	hostBytes, hostConns, hostLive *prom.Desc
}

// The protocols and levels whose series exist from the start, at zero, so that
// rate() and absent() work before the first event.
var (
	knownProtocols = live.Protocols
	knownLevels    = []string{"DEBUG", "INFO", "WARN", "ERROR"}
)

// New returns a Collector of p's metrics configured by opts (nil means the
// defaults). It does not register it anywhere: pass it to p.Observe and to a
// Registerer yourself.
//
// p may be nil: then only the event-driven metrics are exported (what the
// Observe methods were given), and the ones read from the Proxy at collect
// time (bytes, live connections, dropped events) are left out.
func New(p *proxywatch.Proxy, opts *Options) *Collector {
	var o Options
	if opts != nil {
		o = *opts
	}
	ns := o.Namespace
	if ns == "" {
		ns = "proxywatch"
	}
	if o.DurationBuckets == nil {
		o.DurationBuckets = DefaultDurationBuckets
	}
	if o.SizeBuckets == nil {
		o.SizeBuckets = DefaultSizeBuckets
	}
	cl := o.ConstLabels
	c := &Collector{p: p}

	c.opened = prom.NewCounterVec(prom.CounterOpts{
		Namespace: ns, Name: "connections_opened_total", ConstLabels: cl,
		Help: "Connections that entered the live set, by protocol at open.",
	}, []string{"protocol"})
	c.closed = prom.NewCounterVec(prom.CounterOpts{
		Namespace: ns, Name: "connections_closed_total", ConstLabels: cl,
		Help: "Connections that ended, by protocol and end reason.",
	}, []string{"protocol", "reason"})
	c.duration = prom.NewHistogramVec(prom.HistogramOpts{
		Namespace: ns, Name: "connection_duration_seconds", ConstLabels: cl, Buckets: o.DurationBuckets,
		Help: "How long ended connections lived, by protocol.",
	}, []string{"protocol"})
	c.size = prom.NewHistogramVec(prom.HistogramOpts{
		Namespace: ns, Name: "connection_size_bytes", ConstLabels: cl, Buckets: o.SizeBuckets,
		Help: "Bytes each ended connection carried, by protocol and direction (up: client to upstream, down: upstream to client).",
	}, []string{"protocol", "direction"})
	c.logs = prom.NewCounterVec(prom.CounterOpts{
		Namespace: ns, Name: "log_records_total", ConstLabels: cl,
		Help: "Log records received by this exporter, by level.",
	}, []string{"level"})
	c.logsDropped = prom.NewCounter(prom.CounterOpts{
		Namespace: ns, Name: "log_records_dropped_total", ConstLabels: cl,
		Help: "Log records this exporter missed because its observer queue was full.",
	})
	for _, proto := range knownProtocols {
		c.opened.WithLabelValues(string(proto))
	}
	for _, l := range knownLevels {
		c.logs.WithLabelValues(l)
	}

	c.bytes = prom.NewDesc(prom.BuildFQName(ns, "", "bytes_total"),
		"Bytes the proxy carried since it was created, by direction (up: client to upstream, down: upstream to client); equals Proxy.Stats().Up and .Down.",
		[]string{"direction"}, cl)
	c.live = prom.NewDesc(prom.BuildFQName(ns, "", "live_connections"),
		"Connections in the live set, by protocol.",
		[]string{"protocol"}, cl)
	c.dropped = prom.NewDesc(prom.BuildFQName(ns, "", "observer_dropped_events_total"),
		"Observer events (traffic samples, connection events, log records) the proxy dropped because an observer, any observer, did not keep up.",
		nil, cl)

	if o.TopHosts > 0 {
		c.hosts = hosttop.New(o.TopHosts)
		c.hostBytes = prom.NewDesc(prom.BuildFQName(ns, "", "host_bytes_total"),
			"Bytes carried by ended connections, by host (the top hosts by bytes; the rest are \"other\") and direction.",
			[]string{"host", "direction"}, cl)
		c.hostConns = prom.NewDesc(prom.BuildFQName(ns, "", "host_connections_total"),
			"Connections that ended, by host (the top hosts by bytes; the rest are \"other\").",
			[]string{"host"}, cl)
		c.hostLive = prom.NewDesc(prom.BuildFQName(ns, "", "host_live_connections"),
			"Connections in the live set, by host (the top hosts by bytes; the rest are \"other\").",
			[]string{"host"}, cl)
	}
	return c
}

// ObserveConn counts opened and closed connections and adds the ended ones to
// the duration and size histograms (and to the per-host counts when
// Options.TopHosts is set). It implements proxywatch.ConnObserver.
func (c *Collector) ObserveConn(e proxywatch.ConnEvent) {
	ci := &e.Conn
	proto := string(ci.Protocol)
	switch e.State {
	case proxywatch.ConnOpened:
		c.opened.WithLabelValues(proto).Inc()
	case proxywatch.ConnClosed:
		c.closed.WithLabelValues(proto, string(ci.EndReason)).Inc()
		c.duration.WithLabelValues(proto).Observe(seconds(ci))
		c.size.WithLabelValues(proto, "up").Observe(float64(ci.Up))
		c.size.WithLabelValues(proto, "down").Observe(float64(ci.Down))
		if c.hosts != nil {
			c.hosts.Add(ci.Host, ci.Up, ci.Down)
		}
	}
}

// seconds is how long the connection lived. A closed event always has End; the
// fallback keeps a malformed event from becoming a huge negative duration.
func seconds(ci *proxywatch.ConnInfo) float64 {
	d := ci.Duration(time.Now())
	if d < 0 {
		d = 0
	}
	return d.Seconds()
}

// ObserveLog counts the record by level, and the records missed before it.
// It implements proxywatch.LogObserver.
func (c *Collector) ObserveLog(r proxywatch.LogRecord) {
	c.logs.WithLabelValues(proxywatch.LevelName(r.Level)).Inc()
	if r.Dropped > 0 {
		c.logsDropped.Add(float64(r.Dropped))
	}
}

// Describe sends the descriptors of every metric the Collector can export. It
// implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prom.Desc) {
	c.opened.Describe(ch)
	c.closed.Describe(ch)
	c.duration.Describe(ch)
	c.size.Describe(ch)
	c.logs.Describe(ch)
	c.logsDropped.Describe(ch)
	ch <- c.bytes
	ch <- c.live
	ch <- c.dropped
	if c.hosts != nil {
		ch <- c.hostBytes
		ch <- c.hostConns
		ch <- c.hostLive
	}
}

// Collect sends the current metrics: the event-driven ones as counted so far,
// and the ones read from the Proxy now (Stats and Connections). It
// implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prom.Metric) {
	c.opened.Collect(ch)
	c.closed.Collect(ch)
	c.duration.Collect(ch)
	c.size.Collect(ch)
	c.logs.Collect(ch)
	c.logsDropped.Collect(ch)

	var labelled map[string]bool // host label values, for the live gauge
	if c.hosts != nil {
		hosts, other := c.hosts.Snapshot()
		labelled = make(map[string]bool, len(hosts))
		for _, h := range hosts {
			labelled[h.Host] = true
			c.collectHost(ch, h.Host, h.Counts)
		}
		c.collectHost(ch, hosttop.Other, other)
	}

	if c.p == nil {
		return
	}
	st := c.p.Stats()
	ch <- prom.MustNewConstMetric(c.bytes, prom.CounterValue, float64(st.Up), "up")
	ch <- prom.MustNewConstMetric(c.bytes, prom.CounterValue, float64(st.Down), "down")
	ch <- prom.MustNewConstMetric(c.dropped, prom.CounterValue, float64(st.Dropped))

	byProto, byHost := live.Count(c.p.Connections(), labelled, hosttop.Other)
	for proto, n := range byProto {
		ch <- prom.MustNewConstMetric(c.live, prom.GaugeValue, float64(n), string(proto))
	}
	for h, n := range byHost {
		ch <- prom.MustNewConstMetric(c.hostLive, prom.GaugeValue, float64(n), h)
	}
}

func (c *Collector) collectHost(ch chan<- prom.Metric, host string, n hosttop.Counts) {
	ch <- prom.MustNewConstMetric(c.hostBytes, prom.CounterValue, float64(n.Up), host, "up")
	ch <- prom.MustNewConstMetric(c.hostBytes, prom.CounterValue, float64(n.Down), host, "down")
	ch <- prom.MustNewConstMetric(c.hostConns, prom.CounterValue, float64(n.Conns), host)
}

// Interface guards.
var (
	_ prom.Collector          = (*Collector)(nil)
	_ proxywatch.ConnObserver = (*Collector)(nil)
	_ proxywatch.LogObserver  = (*Collector)(nil)
)
