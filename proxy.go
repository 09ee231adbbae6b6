package proxywatch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
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
	// pool of 256 connections per host, dial and TLS handshake timeouts) and
	// the client's Accept-Encoding passed upstream (KeepAcceptEncoding), so
	// that responses reach the client as the upstream encoded them. When
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

	// IdleTimeout closes a client connection that moved no byte in either
	// direction for this long while it carries a tunnel, MITM requests, a
	// WebSocket or a plain request (an upstream that stalls); goproxy itself
	// has no such timeout. Zero means five minutes; negative disables it.
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
	// New panics when the MITM has no usable CA (a programming error: get
	// the CA from LoadOrCreateCA and check its error).
	MITM *MITM

	// UpstreamCAs are trusted for upstream TLS in addition to the system roots
	// (for private or test upstreams). Upstream certificates are always
	// verified. Only used when GoProxy is nil or has no TLSClientConfig.
	UpstreamCAs []*x509.Certificate
}

// Proxy is a goproxy server whose traffic, connections and logs are observed.
// Create it with New; all methods are safe for concurrent use.
type Proxy struct {
	gp   *goproxy.ProxyHttpServer
	sink *logSink

	sampleInterval time.Duration
	idleTimeout    time.Duration
	logLevel       slog.Leveler

	reg     registry
	clients clientSet
	obs     observers

	maxSession atomic.Int64              // highest goproxy session seen by a hook
	self       atomic.Pointer[selfAddrs] // where Serve listens (loop.go)

	mu       sync.Mutex // guards the fields below
	srv      *http.Server
	served   bool
	closing  bool // Close or Shutdown was called: Serve must not start a server
	stopped  bool
	stopCh   chan struct{} // closed to stop the sampler
	done     chan struct{} // closed when every goroutine stopped
	samplerW sync.WaitGroup
}

// Defaults for the zero Options.
const (
	defaultSampleInterval = time.Second
	defaultIdleTimeout    = 5 * time.Minute
	defaultHistory        = 1000
	defaultObserverQueue  = 4096
	defaultDialTimeout    = 30 * time.Second
	// readHeaderTimeout bounds how long a client may take to send a request's
	// headers (slowloris).
	readHeaderTimeout = 30 * time.Second
)

// New returns a Proxy configured by opts (nil means all defaults). It starts no
// goroutine; Serve, ListenAndServe and Observe start the sampler, and Close or
// Shutdown stop it.
func New(opts *Options) *Proxy {
	var o Options
	if opts != nil {
		o = *opts
	}
	p := &Proxy{
		gp:             o.GoProxy,
		sampleInterval: o.SampleInterval,
		idleTimeout:    o.IdleTimeout,
		logLevel:       o.LogLevel,
		stopCh:         make(chan struct{}),
		done:           make(chan struct{}),
	}
	if p.sampleInterval <= 0 {
		p.sampleInterval = defaultSampleInterval
	}
	if p.idleTimeout == 0 {
		p.idleTimeout = defaultIdleTimeout
	}
	if p.logLevel == nil {
		p.logLevel = slog.LevelDebug
	}
	history := o.History
	if history == 0 {
		history = defaultHistory
	}
	p.reg.init(history)
	p.obs.queue = o.ObserverQueue
	if p.obs.queue <= 0 {
		p.obs.queue = defaultObserverQueue
	}
	if o.Traffic != nil || o.Conns != nil || o.Logs != nil {
		p.obs.add(newSubscriber(o.Traffic, o.Conns, o.Logs, p.obs.queue))
	}

	if p.gp == nil {
		p.gp = goproxy.NewProxyHttpServer()
		p.gp.Tr = defaultTransport(o.UpstreamCAs)
		// goproxy drops the client's Accept-Encoding, and Go's transport
		// then asks for gzip itself and decompresses every compressed
		// response: CPU spent to send the client more bytes than the
		// upstream sent. A proxy passes the encoding through, as
		// DisableCompression in defaultTransport does on the way back.
		p.gp.KeepAcceptEncoding = true
	} else if len(o.UpstreamCAs) > 0 && p.gp.Tr != nil {
		cfg := &tls.Config{}
		if p.gp.Tr.TLSClientConfig != nil {
			cfg = p.gp.Tr.TLSClientConfig.Clone()
		}
		if cfg.RootCAs == nil {
			cfg.RootCAs = rootPool(o.UpstreamCAs)
		}
		p.gp.Tr.TLSClientConfig = cfg
	}
	p.sink = newLogSink(p.logLevel, p.resolveSession, p.emitLog)
	p.sink.wants, p.sink.full = p.obs.wantsLog, p.obs.dropLogIfFull
	// goproxy only formats INFO lines when Verbose is set; the sink filters by
	// level before formatting anything, so keeping it on costs little.
	p.gp.Verbose = true
	p.gp.Logger = p.sink
	p.guardDials()
	p.wrapConnectDial()
	p.gp.OnRequest().DoFunc(p.onRequest)
	p.gp.OnRequest().HandleConnectFunc(p.onConnect)
	p.gp.OnResponse().DoFunc(p.onResponse)
	if o.MITM != nil {
		if err := o.MITM.check(); err != nil {
			panic("proxywatch: unusable Options.MITM: " + err.Error())
		}
		p.gp.OnRequest().HandleConnect(o.MITM.connectHandler())
	}
	return p
}

// defaultTransport is goproxy's transport with the limits it lacks: dial and
// handshake timeouts, and an idle pool large enough for a busy proxy (Go's
// default keeps two idle connections per host, which caps a proxy's
// throughput to one busy host), and without the transparent gzip that suits a
// client but not a proxy.
func defaultTransport(extraCAs []*x509.Certificate) *http.Transport {
	d := &net.Dialer{Timeout: defaultDialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: rootPool(extraCAs)},
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// A response goes to the client as the upstream encoded it: the
		// transport neither asks for gzip nor decompresses.
		DisableCompression: true,
	}
}

// rootPool returns the system roots plus extra, or nil (the system roots) when
// there are no extras.
func rootPool(extra []*x509.Certificate) *x509.CertPool {
	if len(extra) == 0 {
		return nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, c := range extra {
		pool.AddCert(c)
	}
	return pool
}

// GoProxy returns the observed goproxy server, so that the whole goproxy API
// (OnRequest, OnResponse, HandleConnect, MITM actions) stays available. Set a
// per-request ctx.RoundTripper only through WrapRoundTripper, or that request
// is not counted.
func (p *Proxy) GoProxy() *goproxy.ProxyHttpServer { return p.gp }

// SlogHandler returns a slog.Handler that turns the embedding program's own
// log records into LogRecords (Source "app") for the same observers.
func (p *Proxy) SlogHandler() slog.Handler { return p.sink.handler() }

// start starts the sampler and the observer goroutines once. It reports false
// when the Proxy is already closed.
func (p *Proxy) start() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	if !p.served {
		p.served = true
		p.obs.start()
		p.samplerW.Add(1)
		go func() {
			defer p.samplerW.Done()
			p.sampler(p.stopCh)
		}()
	}
	return true
}

// Serve accepts proxy clients on l until Shutdown or Close, and returns
// http.ErrServerClosed then. Serve may be called at most once.
func (p *Proxy) Serve(l net.Listener) error {
	if !p.start() {
		_ = l.Close()
		return http.ErrServerClosed
	}
	p.setSelf(l.Addr())
	p.mu.Lock()
	if p.closing {
		// Close or Shutdown ran between start and here, and found no server
		// to stop: this one must not start.
		p.mu.Unlock()
		_ = l.Close()
		return http.ErrServerClosed
	}
	if p.srv != nil {
		p.mu.Unlock()
		return errors.New("proxywatch: Serve called twice")
	}
	idle := p.idleTimeout
	if idle < 0 {
		idle = 0
	}
	p.srv = &http.Server{
		Handler:           p.gp,
		ConnContext:       connContext,
		ConnState:         p.connState,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idle,
		ErrorLog:          p.sink.errorLog(),
	}
	srv := p.srv
	p.mu.Unlock()
	return srv.Serve(&listener{Listener: l, p: p})
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (p *Proxy) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return p.Serve(l)
}

func (p *Proxy) connState(c net.Conn, s http.ConnState) {
	if s != http.StateHijacked {
		return
	}
	if t, ok := c.(tracked); ok {
		t.base().hijacked.Store(true)
	}
}

// Shutdown stops accepting clients, closes idle keep-alive connections and
// waits for live connections to end, tunnels and WebSockets included. When ctx
// is done first, it closes the rest (EndShutdown) and returns ctx.Err(). Then
// it stops the sampler and the observer goroutines.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	srv := p.srv
	p.mu.Unlock()
	var err error
	if srv != nil {
		err = srv.Shutdown(ctx)
	}
	for err == nil {
		p.reg.mu.Lock()
		n, changed := len(p.reg.live), p.reg.waitChangeLocked()
		p.reg.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	p.shutdownNow()
	return err
}

// Close closes the listener and every client and upstream connection at once
// (EndShutdown), then stops the sampler and observer goroutines. It is
// idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closing = true
	srv := p.srv
	p.mu.Unlock()
	// End the live connections first: srv.Close closes their client
	// connections, which would end them with another reason.
	p.closeWhere(EndShutdown, func(*entry) bool { return true })
	var err error
	if srv != nil {
		err = srv.Close()
	}
	p.shutdownNow()
	return err
}

// shutdownNow ends what is still live, closes every client connection, and
// stops the goroutines the Proxy started.
func (p *Proxy) shutdownNow() {
	p.closeWhere(EndShutdown, func(*entry) bool { return true })
	for _, c := range p.clients.closeAll() {
		_ = c.Close()
	}
	p.mu.Lock()
	first := !p.stopped
	p.stopped = true
	p.mu.Unlock()
	if first {
		close(p.stopCh)
		p.samplerW.Wait()
		p.obs.stopAll()
		close(p.done)
	}
	<-p.done // a concurrent Close returns only when the first one finished
}
