package proxywatch

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/elazarl/goproxy"
)

// Options configures a Proxy. The zero value (or a nil *Options) is a working
// configuration: a fresh goproxy with good transport defaults, no MITM, a
// one-second sampler, a five-minute idle timeout for tunnels and a history of
// the last 1000 closed connections.
type Options struct {
	// GoProxy is the goproxy server to observe. Nil means a new one made by
	// goproxy.NewProxyHttpServer with proxywatch's transport defaults (idle
	// pool of 256 connections per host, dial and TLS handshake timeouts). When
	// you pass your own, proxywatch replaces its Logger, sets Verbose, and wraps
	// its ConnectDial hooks; handlers you registered before New run before
	// proxywatch's own, and a request answered by one of them is not counted.
	GoProxy *goproxy.ProxyHttpServer

	// Traffic, Conns and Logs are observers installed at construction. More can
	// be added later with Proxy.Observe. Nil means none.
	Traffic TrafficObserver
	Conns   ConnObserver
	Logs    LogObserver

	// LogLevel is the lowest level of log record delivered to log observers.
	// Nil means slog.LevelDebug: everything. A *slog.LevelVar may be changed
	// while the proxy runs.
	LogLevel slog.Leveler

	// SampleInterval is the sampler's period: traffic samples, per-connection
	// rates and idle checks happen once per interval. Zero means one second.
	SampleInterval time.Duration

	// IdleTimeout closes a hijacked client connection (tunnel, MITM, WebSocket)
	// that moved no byte in either direction for this long; goproxy itself has
	// no such timeout. Zero means five minutes; negative disables it.
	IdleTimeout time.Duration

	// History is how many closed connections are kept for Proxy.History.
	// Zero means 1000; negative keeps none.
	History int

	// ObserverQueue is the number of events queued for each observer before
	// further events for that observer are dropped (and counted). Zero means
	// 4096.
	ObserverQueue int

	// MITM, when non-nil, decrypts CONNECT tunnels to the hosts it matches with
	// certificates signed by its CA. Nil means no MITM: tunnels pass through.
	MITM *MITM

	// UpstreamCAs are trusted for upstream TLS in addition to the system roots
	// (for private or test upstreams). Upstream certificates are always
	// verified. Only used when GoProxy is nil or has no TLSClientConfig.
	UpstreamCAs []*x509.Certificate
}

// Proxy is a goproxy server whose traffic, connections and logs are observed.
// Create it with New; all methods are safe for concurrent use.
type Proxy struct {
	gp *goproxy.ProxyHttpServer
}

// New returns a Proxy configured by opts (nil means all defaults). It starts no
// goroutine; Serve or ListenAndServe does.
func New(opts *Options) *Proxy { panic("unimplemented") }

// GoProxy returns the observed goproxy server, so that the whole goproxy API
// (OnRequest, OnResponse, HandleConnect, MITM actions) stays available. Set a
// per-request ctx.RoundTripper only through WrapRoundTripper, or that request
// is not counted.
func (p *Proxy) GoProxy() *goproxy.ProxyHttpServer { return p.gp }

// WrapRoundTripper returns rt wrapped so that the request of ctx keeps being
// counted. Use it when a handler of yours sets ctx.RoundTripper:
//
//	ctx.RoundTripper = p.WrapRoundTripper(ctx, myRT)
func (p *Proxy) WrapRoundTripper(ctx *goproxy.ProxyCtx, rt goproxy.RoundTripper) goproxy.RoundTripper {
	panic("unimplemented")
}

// Serve accepts proxy clients on l until Shutdown or Close, and returns
// http.ErrServerClosed then. Serve may be called at most once.
func (p *Proxy) Serve(l net.Listener) error { panic("unimplemented") }

// ListenAndServe listens on the TCP address addr and calls Serve.
func (p *Proxy) ListenAndServe(addr string) error { panic("unimplemented") }

// Shutdown stops accepting clients, closes idle keep-alive connections and
// waits for live connections to end. When ctx is done first, it closes the
// rest (EndShutdown) and returns ctx.Err(). Then it stops the sampler and the
// observer goroutines.
func (p *Proxy) Shutdown(ctx context.Context) error { panic("unimplemented") }

// Close closes the listener and every client and upstream connection at once
// (EndShutdown), then stops the sampler and observer goroutines. It is
// idempotent.
func (p *Proxy) Close() error { panic("unimplemented") }

// Observe starts delivering events to o, which must implement at least one of
// TrafficObserver, ConnObserver and LogObserver; each it implements is used.
// The returned stop function removes o and waits until o is no longer called.
func (p *Proxy) Observe(o any) (stop func()) { panic("unimplemented") }

// Totals returns the bytes counted since New: up is client to upstream, down
// upstream to client. It equals the sum over every connection, live and closed.
func (p *Proxy) Totals() (up, down uint64) { panic("unimplemented") }

// Stats is a snapshot of the Proxy's counters.
type Stats struct {
	Up, Down       uint64 // as Totals
	Live           int    // connections in the live set
	Opened, Closed uint64 // connections ever opened and closed
	Logs           uint64 // log records accepted
	Dropped        uint64 // observer events dropped because an observer did not keep up
}

// Stats returns a snapshot of the Proxy's counters.
func (p *Proxy) Stats() Stats { panic("unimplemented") }

// Connections returns a snapshot of the live connections, sorted by ID.
func (p *Proxy) Connections() []ConnInfo { panic("unimplemented") }

// Connection returns the live or recently closed connection with the given id.
func (p *Proxy) Connection(id ConnID) (ConnInfo, bool) { panic("unimplemented") }

// History returns the most recently closed connections, oldest first, at most
// Options.History of them.
func (p *Proxy) History() []ConnInfo { panic("unimplemented") }

// CloseConnection closes the live connection id: the client sees an error, the
// upstream side is released and the connection leaves the live set at once with
// EndClosedByAPI. It reports what was closed, and false if id was not live.
func (p *Proxy) CloseConnection(id ConnID) (ConnInfo, bool) { panic("unimplemented") }

// CloseConnections closes every live connection for which match returns true,
// as CloseConnection does, and returns what it closed.
func (p *Proxy) CloseConnections(match func(ConnInfo) bool) []ConnInfo { panic("unimplemented") }

// CloseAll closes every live connection and returns what it closed.
func (p *Proxy) CloseAll() []ConnInfo { return p.CloseConnections(nil) }

// SlogHandler returns a slog.Handler that turns the embedding program's own
// log records into LogRecords (Source "app") for the same observers.
func (p *Proxy) SlogHandler() slog.Handler { panic("unimplemented") }

var _ = http.ErrServerClosed
