package otel

import (
	"context"
	"github.com/proxywatch/proxywatch/exporters/internal/live"
	"sync"
	"sync/atomic"
	"time"

	gootel "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/exporters/internal/hosttop"
)

// ScopeName is the instrumentation scope of the Meter the instruments are
// created with.
const ScopeName = "github.com/proxywatch/proxywatch/exporters/otel"

// DefaultDurationBuckets are the explicit bucket boundaries, in seconds, of the
// connection duration histogram when Options.DurationBuckets is nil. They
// span a fast plain-HTTP exchange (a millisecond) to a tunnel kept open for an
// hour.
var DefaultDurationBuckets = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 1800, 3600}

// DefaultSizeBuckets are the explicit bucket boundaries, in bytes, of the
// connection size histogram when Options.SizeBuckets is nil: powers of four
// from 256 B to 1 GiB.
var DefaultSizeBuckets = []float64{256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30}

// Options configures an Observer. The zero value (or a nil *Options) records
// every instrument through the global MeterProvider, with the default buckets
// and no host attribute.
type Options struct {
	// MeterProvider creates the Meter. Nil means the global one
	// (go.opentelemetry.io/otel.GetMeterProvider), as for any
	// instrumentation library.
	MeterProvider metric.MeterProvider

	// Attributes are added to every measurement, to tell apart several
	// proxies in one process (for example proxy=eu-1). What identifies the
	// process itself belongs in the SDK's Resource instead.
	Attributes []attribute.KeyValue

	// DurationBuckets and SizeBuckets are the histograms' explicit bucket
	// boundaries, in seconds and in bytes. Nil means DefaultDurationBuckets
	// and DefaultSizeBuckets. A View in the SDK overrides them.
	DurationBuckets []float64
	SizeBuckets     []float64

	// TopHosts, when positive, adds the per-host instruments, with a host
	// attribute for at most TopHosts hosts (the ones that carried the most
	// bytes) and "other" for the rest. Zero (the default) records no host
	// attribute at all, since values that come from the network must have a
	// bound. See the package documentation (# Per-host instruments).
	TopHosts int
}

// Observer records one Proxy's metrics through OpenTelemetry instruments, and
// is the proxywatch observer that feeds the event-driven ones. Make it with
// New, pass it to Proxy.Observe, and Close it when done.
//
// Its Observe methods only add to instruments, so they keep up with any
// proxy; the observable instruments read the Proxy when the SDK collects. All
// methods are safe for concurrent use.
type Observer struct {
	p    *proxywatch.Proxy
	base []attribute.KeyValue

	opened, closed    metric.Int64Counter
	duration          metric.Float64Histogram
	size              metric.Int64Histogram
	logs, logsDropped metric.Int64Counter

	bytes, dropped, hostBytes, hostConns metric.Int64ObservableCounter
	live, hostLive                       metric.Int64ObservableUpDownCounter

	hosts *hosttop.Table // nil without Options.TopHosts

	// Measurement options of the event-driven instruments, with their
	// attribute sets computed once: an event then costs the SDK's map lookup,
	// not a sort, a hash and allocations per attribute.
	levelOpts  map[string]*measureOpts // read-only after New
	noAttrs    *measureOpts
	protoOpts  optCache // {protocol}
	closedOpts optCache // {protocol, reason}
	sizeOpts   optCache // {protocol, direction}

	reg       metric.Registration // nil when nothing is observable
	closeOnce sync.Once
	closeErr  error
}

// New creates the instruments, configured by opts (nil means the defaults),
// and registers the callback that reads p when the SDK collects. It does not
// observe p: pass the Observer to p.Observe for the event-driven instruments.
//
// p may be nil: then only what the Observe methods were given is recorded, and
// the instruments read from the Proxy (bytes, live connections, dropped
// events) are not created.
func New(p *proxywatch.Proxy, opts *Options) (*Observer, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MeterProvider == nil {
		o.MeterProvider = gootel.GetMeterProvider()
	}
	if o.DurationBuckets == nil {
		o.DurationBuckets = DefaultDurationBuckets
	}
	if o.SizeBuckets == nil {
		o.SizeBuckets = DefaultSizeBuckets
	}
	m := o.MeterProvider.Meter(ScopeName)
	ob := &Observer{p: p, base: append([]attribute.KeyValue(nil), o.Attributes...)}

	var err, e error
	// keep remembers the first error; the instruments are still usable (no-ops)
	// after one, as the API guarantees.
	keep := func(x error) {
		if err == nil {
			err = x
		}
	}
	ob.opened, e = m.Int64Counter("proxywatch.connections.opened", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections that entered the live set, by protocol at open."))
	keep(e)
	ob.closed, e = m.Int64Counter("proxywatch.connections.closed", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections that ended, by protocol and end reason."))
	keep(e)
	ob.duration, e = m.Float64Histogram("proxywatch.connection.duration", metric.WithUnit("s"),
		metric.WithDescription("How long ended connections lived, by protocol."),
		metric.WithExplicitBucketBoundaries(o.DurationBuckets...))
	keep(e)
	ob.size, e = m.Int64Histogram("proxywatch.connection.size", metric.WithUnit("By"),
		metric.WithDescription("Bytes each ended connection carried, by protocol and direction (up: client to upstream, down: upstream to client)."),
		metric.WithExplicitBucketBoundaries(o.SizeBuckets...))
	keep(e)
	ob.logs, e = m.Int64Counter("proxywatch.log.records", metric.WithUnit("{record}"),
		metric.WithDescription("Log records received by this exporter, by level."))
	keep(e)
	ob.logsDropped, e = m.Int64Counter("proxywatch.log.records.dropped", metric.WithUnit("{record}"),
		metric.WithDescription("Log records this exporter missed because its observer queue was full."))
	keep(e)
	ctx := context.Background()
	ob.noAttrs = ob.newOpts()
	ob.levelOpts = map[string]*measureOpts{}
	for _, l := range []string{"DEBUG", "INFO", "WARN", "ERROR"} {
		ob.levelOpts[l] = ob.newOpts(attribute.String("level", l))
		ob.logs.Add(ctx, 0, ob.levelOpts[l].add...)
	}
	for _, proto := range knownProtocols {
		ob.opened.Add(ctx, 0, ob.protocolOpts(proto).add...)
	}
	var observed []metric.Observable
	if p != nil {
		ob.bytes, e = m.Int64ObservableCounter("proxywatch.bytes", metric.WithUnit("By"),
			metric.WithDescription("Bytes the proxy carried since it was created, by direction (up: client to upstream, down: upstream to client); equals Proxy.Stats().Up and .Down."))
		keep(e)
		ob.live, e = m.Int64ObservableUpDownCounter("proxywatch.live_connections", metric.WithUnit("{connection}"),
			metric.WithDescription("Connections in the live set, by protocol."))
		keep(e)
		ob.dropped, e = m.Int64ObservableCounter("proxywatch.observer.dropped_events", metric.WithUnit("{event}"),
			metric.WithDescription("Observer events (traffic samples, connection events, log records) the proxy dropped because an observer, any observer, did not keep up."))
		keep(e)
		observed = append(observed, ob.bytes, ob.live, ob.dropped)
	}
	if o.TopHosts > 0 {
		ob.hosts = hosttop.New(o.TopHosts)
		ob.hostBytes, e = m.Int64ObservableCounter("proxywatch.host.bytes", metric.WithUnit("By"),
			metric.WithDescription("Bytes carried by ended connections, by host (the top hosts by bytes; the rest are \"other\") and direction."))
		keep(e)
		ob.hostConns, e = m.Int64ObservableCounter("proxywatch.host.connections", metric.WithUnit("{connection}"),
			metric.WithDescription("Connections that ended, by host (the top hosts by bytes; the rest are \"other\")."))
		keep(e)
		observed = append(observed, ob.hostBytes, ob.hostConns)
		if p != nil {
			ob.hostLive, e = m.Int64ObservableUpDownCounter("proxywatch.host.live_connections", metric.WithUnit("{connection}"),
				metric.WithDescription("Connections in the live set, by host (the top hosts by bytes; the rest are \"other\")."))
			keep(e)
			observed = append(observed, ob.hostLive)
		}
	}
	if len(observed) > 0 {
		ob.reg, e = m.RegisterCallback(ob.collect, observed...)
		keep(e)
	}
	return ob, err
}

// The protocols whose series exist from the start, at zero, so that rates and
// absence checks work before the first event.
var knownProtocols = live.Protocols

// measureOpts holds one measurement option, as the slices Add and Record take, so
// that passing it allocates nothing.
type measureOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

// newOpts returns the options of the Observer's base attributes and kv.
func (o *Observer) newOpts(kv ...attribute.KeyValue) *measureOpts {
	m := o.attrs(kv...)
	return &measureOpts{add: []metric.AddOption{m}, rec: []metric.RecordOption{m}}
}

// optCache maps two attribute values to their measureOpts. The values come from the
// proxy, not the network (protocols, end reasons, directions), but the cache
// is bounded all the same: past maxCached entries, options are built per use.
type optCache struct {
	m sync.Map // optKey -> *measureOpts
	n atomic.Int32
}

type optKey struct{ a, b string }

const maxCached = 256

func (c *optCache) get(k optKey, build func() *measureOpts) *measureOpts {
	if v, ok := c.m.Load(k); ok {
		return v.(*measureOpts)
	}
	v := build()
	if c.n.Load() < maxCached {
		if _, loaded := c.m.LoadOrStore(k, v); !loaded {
			c.n.Add(1)
		}
	}
	return v
}

func (o *Observer) protocolOpts(p proxywatch.Protocol) *measureOpts {
	return o.protoOpts.get(optKey{string(p), ""}, func() *measureOpts {
		return o.newOpts(attribute.String("protocol", string(p)))
	})
}

// attrs returns the Observer's base attributes followed by kv.
func (o *Observer) attrs(kv ...attribute.KeyValue) metric.MeasurementOption {
	if len(o.base) == 0 {
		return metric.WithAttributes(kv...)
	}
	all := make([]attribute.KeyValue, 0, len(o.base)+len(kv))
	return metric.WithAttributes(append(append(all, o.base...), kv...)...)
}

// ObserveConn counts opened and closed connections and records the ended
// ones in the duration and size histograms (and in the per-host counts when
// Options.TopHosts is set). It implements proxywatch.ConnObserver.
func (o *Observer) ObserveConn(e proxywatch.ConnEvent) {
	ctx := context.Background()
	ci := &e.Conn
	switch e.State {
	case proxywatch.ConnOpened:
		o.opened.Add(ctx, 1, o.protocolOpts(ci.Protocol).add...)
	case proxywatch.ConnClosed:
		proto, reason := string(ci.Protocol), string(ci.EndReason)
		o.closed.Add(ctx, 1, o.closedOpts.get(optKey{proto, reason}, func() *measureOpts {
			return o.newOpts(attribute.String("protocol", proto), attribute.String("reason", reason))
		}).add...)
		d := ci.Duration(time.Now())
		if d < 0 {
			d = 0 // a malformed event must not become a huge negative duration
		}
		o.duration.Record(ctx, d.Seconds(), o.protocolOpts(ci.Protocol).rec...)
		for _, dir := range [2]struct {
			name string
			n    uint64
		}{{"up", ci.Up}, {"down", ci.Down}} {
			o.size.Record(ctx, clamp(dir.n), o.sizeOpts.get(optKey{proto, dir.name}, func() *measureOpts {
				return o.newOpts(attribute.String("protocol", proto), attribute.String("direction", dir.name))
			}).rec...)
		}
		if o.hosts != nil {
			o.hosts.Add(ci.Host, ci.Up, ci.Down)
		}
	}
}

// ObserveLog counts the record by level, and the records missed before it.
// It implements proxywatch.LogObserver.
func (o *Observer) ObserveLog(r proxywatch.LogRecord) {
	ctx := context.Background()
	o.logs.Add(ctx, 1, o.levelOpts[proxywatch.LevelName(r.Level)].add...)
	if r.Dropped > 0 {
		o.logsDropped.Add(ctx, clamp(r.Dropped), o.noAttrs.add...)
	}
}

// collect is the callback of the observable instruments: it reads the per-host
// counts, and the Proxy's counters and live connections.
func (o *Observer) collect(_ context.Context, obs metric.Observer) error {
	var labelled map[string]bool
	if o.hosts != nil {
		hosts, other := o.hosts.Snapshot()
		labelled = make(map[string]bool, len(hosts))
		for _, h := range hosts {
			labelled[h.Host] = true
			o.observeHost(obs, h.Host, h.Counts)
		}
		o.observeHost(obs, hosttop.Other, other)
	}
	if o.p == nil {
		return nil
	}

	st := o.p.Stats()
	obs.ObserveInt64(o.bytes, clamp(st.Up), o.attrs(attribute.String("direction", "up")))
	obs.ObserveInt64(o.bytes, clamp(st.Down), o.attrs(attribute.String("direction", "down")))
	obs.ObserveInt64(o.dropped, clamp(st.Dropped), o.attrs())

	byProto, byHost := live.Count(o.p.Connections(), labelled, hosttop.Other)
	for proto, n := range byProto {
		obs.ObserveInt64(o.live, int64(n), o.attrs(attribute.String("protocol", string(proto))))
	}
	for h, n := range byHost {
		obs.ObserveInt64(o.hostLive, int64(n), o.attrs(attribute.String("host", h)))
	}
	return nil
}

func (o *Observer) observeHost(obs metric.Observer, host string, n hosttop.Counts) {
	h := attribute.String("host", host)
	obs.ObserveInt64(o.hostBytes, clamp(n.Up), o.attrs(h, attribute.String("direction", "up")))
	obs.ObserveInt64(o.hostBytes, clamp(n.Down), o.attrs(h, attribute.String("direction", "down")))
	obs.ObserveInt64(o.hostConns, clamp(n.Conns), o.attrs(h))
}

// Close unregisters the callback of the observable instruments, so that a
// later collection no longer reports them. The event-driven instruments stay as they
// are. Stop observing the Proxy first (the stop function of Proxy.Observe).
// Close is idempotent.
func (o *Observer) Close() error {
	o.closeOnce.Do(func() {
		if o.reg != nil {
			o.closeErr = o.reg.Unregister()
		}
	})
	return o.closeErr
}

// clamp converts a count to the int64 the instruments take; counts past
// MaxInt64 (8 EiB) stay at MaxInt64 instead of turning negative.
func clamp(n uint64) int64 {
	if n > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(n)
}

// Interface guards.
var (
	_ proxywatch.ConnObserver = (*Observer)(nil)
	_ proxywatch.LogObserver  = (*Observer)(nil)
)
