// Package otel records the metrics of a proxywatch.Proxy through
// OpenTelemetry instruments (the go.opentelemetry.io/otel metric API), so that
// they reach any OpenTelemetry collector or backend, for people who run many
// proxies.
//
// It is its own Go module, so that programs using proxywatch without
// OpenTelemetry do not depend on it. The package name is otel, like the API's
// root package, so import it under another name:
//
//	import (
//		sdkmetric "go.opentelemetry.io/otel/sdk/metric"
//		pwotel "github.com/proxywatch/proxywatch/exporters/otel"
//	)
//
//	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)) // your exporter's reader
//	p := proxywatch.New(nil)
//	o, err := pwotel.New(p, &pwotel.Options{MeterProvider: mp})
//	if err != nil { ... }
//	defer o.Close()
//	stop := p.Observe(o) // the event-driven instruments
//	defer stop()
//
// The Observer is an ordinary observer (proxywatch.ConnObserver and
// proxywatch.LogObserver) with its own queue and goroutine in the Proxy, so it
// never slows the proxy down; what it cannot learn from events it reads from
// the Proxy in an observable-instrument callback when the SDK collects.
//
// # Instruments
//
// Names follow the OpenTelemetry conventions (dotted, units in UCUM: s, By,
// {connection}), chosen so that OpenTelemetry's Prometheus exporter
// (go.opentelemetry.io/otel/exporters/prometheus) turns them into the very
// names, types and labels of this repository's Prometheus exporter
// (proxywatch.bytes with unit By becomes the counter proxywatch_bytes_total,
// and so on), so that one set of dashboards serves both. "up" is client to
// upstream, "down" upstream to client, as in proxywatch.
//
// Observed from the Proxy at collection time, exact whatever happened to
// events:
//
//	proxywatch.bytes                      Int64ObservableCounter        By            direction
//	proxywatch.live_connections           Int64ObservableUpDownCounter  {connection}  protocol
//	proxywatch.observer.dropped_events    Int64ObservableCounter        {event}       (Stats.Dropped)
//
// Recorded from connection events and log records:
//
//	proxywatch.connections.opened         Int64Counter      {connection}  protocol
//	proxywatch.connections.closed         Int64Counter      {connection}  protocol, reason
//	proxywatch.connection.duration        Float64Histogram  s             protocol
//	proxywatch.connection.size            Int64Histogram    By            protocol, direction
//	proxywatch.log.records                Int64Counter      {record}      level
//	proxywatch.log.records.dropped        Int64Counter      {record}
//
// reason is the EndReason ("completed", "client closed"...), level is
// DEBUG, INFO, WARN or ERROR. A connection counts under the protocol it had
// when the event was sent: a plain request that upgrades to a WebSocket opens
// as "HTTP" and closes as "WebSocket", so use proxywatch.live_connections for
// the live count. Options.Attributes are added to every measurement.
//
// The event-driven instruments miss what the Observer's queue could not hold
// (proxywatch.Options.ObserverQueue, 4096 by default), which does not happen
// unless the process is starved of CPU; proxywatch.observer.dropped_events and
// proxywatch.log.records.dropped say when it did.
//
// # Per-host instruments
//
// Hosts come from the network, so a host attribute is opt-in and bounded:
// Options.TopHosts = N adds
//
//	proxywatch.host.bytes                 Int64ObservableCounter        By            host, direction
//	proxywatch.host.connections           Int64ObservableCounter        {connection}  host
//	proxywatch.host.live_connections      Int64ObservableUpDownCounter  {connection}  host
//
// with at most N host values plus "other", chosen and counted exactly as in
// the Prometheus exporter: the "host:port" the client asked for; the N hosts
// that carried the most bytes (approximately, in bounded memory); a host's
// counts start when it gets its attribute value, and a host that loses it to
// a heavier one stops being reported, so that no counter ever goes down.
// Per-host bytes are counted when a connection ends; proxywatch.bytes is the
// live, exact total.
package otel
