package proxywatch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/elazarl/goproxy"
)

// This file is where proxywatch plugs into goproxy, without forking it:
//
//   - onRequest (the first OnRequest handler) opens a connection for every
//     plain-HTTP request and every decrypted MITM request, and installs a
//     counting ctx.RoundTripper that counts the bodies and sees the status;
//   - onConnect (the first CONNECT handler) notes the CONNECT on its client
//     connection; the wrapped ConnectDialWithReq opens the tunnel connection
//     when goproxy decides to pass it through, and counts its bytes;
//   - onResponse records the status of responses that no round trip made.

// onRequest opens a connection for a plain-HTTP or MITM request.
func (p *Proxy) onRequest(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	id := ConnID(ctx.Session)
	p.noteSession(id)
	e := &entry{info: connIdent{
		ID:     id,
		Method: req.Method,
		Host:   req.URL.Host,
		URL:    req.URL.String(),
		Client: req.RemoteAddr,
		Start:  time.Now(),
	}}
	if e.info.Host == "" {
		e.info.Host = req.Host
	}
	tc := connFrom(req.Context())
	if tc != nil {
		// A plain-HTTP request: net/http handed us its connection.
		e.info.Protocol = ProtoHTTP
		e.client = tc
		e.busy = true // a stalled upstream is subject to the idle timeout
		tc.busy.Add(1)
	} else {
		// A request decrypted from a MITM'd CONNECT: its context comes from
		// goproxy's own parser, so find the client connection by address.
		e.info.Protocol = ProtoHTTPMITM
		// Over HTTP/2 (goproxy's AllowHTTP2) the connection is read by its
		// HTTP/2 server all the time: no read ahead there (watchClient).
		e.readAhead = req.ProtoMajor < 2
		if req.URL.Scheme == "https" {
			e.info.Protocol = ProtoHTTPSMITM
		}
		e.client = p.tracker.lookup(req.RemoteAddr)
		if e.client != nil {
			e.info.Parent, _, _ = e.client.connectNote()
			// The end of the previous response may still be held
			// (streamBody) when this request was read with it.
			e.client.flushHeld()
		}
	}

	// The request's own context ends when goproxy finished with it (plain:
	// ServeHTTP returned; MITM: the response was written). For a MITM
	// request, a context of ours lets CloseConnection cancel the upstream
	// round trip. A plain request needs none: closing its client connection
	// (entry.kill) fails net/http's background read, which cancels the
	// request's own context, or the client body the round trip sends, and
	// a derived context with a copy of the request would cost every plain
	// request for nothing.
	//
	// The MITM context keeps the values of goproxy's but not its
	// cancellation: requestDone, which runs when goproxy's ends, cancels it
	// first thing. Derived from goproxy's, it would be one more child that
	// goproxy's context registers, then cancels and removes for every
	// request, for a cancellation nobody waits for by then: goproxy closed
	// the response body before it ends its context.
	done := req.Context()
	if tc == nil {
		rctx, cancel := context.WithCancel(context.WithoutCancel(done))
		e.cancel = cancel
		req = req.WithContext(rctx)
	}
	ctx.RoundTripper = &countingRT{p: p, e: e, next: ctx.RoundTripper}
	p.open(e)
	context.AfterFunc(done, func() { p.requestDone(e) })
	return req, nil
}

// requestDone ends a request's connection once goproxy is done with it.
func (p *Proxy) requestDone(e *entry) {
	if e.cancel != nil {
		e.cancel()
	}
	if e.readAhead && e.client != nil {
		e.client.flushHeld() // the response was written: a held head goes now
	}
	reason, err := EndCompleted, error(nil)
	switch {
	case e.rtPending.Load():
		// The request ended while goproxy still waited for the upstream:
		// only the client going away ends a request that early.
		reason, err = EndClientClosed, e.client.failure()
	case e.rtErr.Load() != nil:
		err = e.rtErr.Load().err
		reason = EndUpstreamError
		if b := e.reqErr.Load(); b != nil {
			reason, err = EndClientClosed, b.err
		} else if isCanceled(err) {
			reason = EndClientClosed
		}
	case e.bodyErr.Load() != nil:
		err = e.bodyErr.Load().err
		reason = EndUpstreamError
		if isCanceled(err) {
			reason = EndClientClosed
		}
	case e.hasBody.Load() && !e.bodyDone.Load() && e.client.gone():
		reason, err = EndClientClosed, e.client.failure()
	case e.upgraded.Load() && e.client.failure() != nil:
		// A WebSocket whose client reset or failed (a clean close by
		// either side is a completed WebSocket).
		reason, err = EndClientClosed, e.client.failure()
	}
	p.reg.mu.Lock()
	ws := e.info.Protocol == ProtoWebSocket
	p.endLocked(e, reason, err)
	p.reg.mu.Unlock()
	if ws && e.client != nil {
		// goproxy never closes the client side of a plain-HTTP WebSocket
		// (research/goproxy.md §3): without this the client would wait forever.
		_ = e.client.Close()
	}
}

// watchClient makes the client connection of a MITM request read ahead
// while the request waits for the upstream (from readAheadAfter on), so that
// the request is cancelled (and ends with EndClientClosed) when the client
// goes away; see readAhead.
// It is called when the request was read to its end and the round trip is
// pending: goproxy does not read the connection again before the response
// is written.
func (e *entry) watchClient() {
	if e.readAhead && e.client != nil && e.rtPending.Load() {
		e.client.watchGone(e.cancel)
	}
}

// upstreamBroke handles an upstream body that failed mid-way. The client
// connection is closed at once: in plain mode net/http would otherwise end a
// chunked response normally, and the client would take a truncated body for a
// complete one.
func (p *Proxy) upstreamBroke(e *entry, err error) {
	if !e.bodyErr.CompareAndSwap(nil, &errorBox{err}) {
		return
	}
	if isCanceled(err) {
		return // the client went away or the connection was closed on purpose
	}
	if e.client != nil {
		_ = e.client.Close()
	}
}

func isCanceled(err error) bool {
	return err == context.Canceled || errors.Is(err, context.Canceled)
}

// countingRT is the round tripper proxywatch installs for each request. It
// wraps the request and response bodies (never in OnResponse, where goproxy
// would drop Content-Length and re-chunk the response).
type countingRT struct {
	p    *Proxy
	e    *entry
	next goproxy.RoundTripper
}

func (rt *countingRT) RoundTrip(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Response, error) {
	e := rt.e
	e.rtPending.Store(true)
	defer e.rtPending.Store(false) // after rtErr is set
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &reqBody{ReadCloser: req.Body, e: e}
	} else {
		e.watchClient()
	}
	var resp *http.Response
	var err error
	if rt.next != nil {
		resp, err = rt.next.RoundTrip(req, ctx)
	} else {
		resp, err = rt.p.gp.Tr.RoundTrip(upstreamHop(req))
	}
	if err != nil {
		e.rtErr.CompareAndSwap(nil, &errorBox{err})
		if errors.Is(err, errLoop) {
			rt.p.setStatus(e, http.StatusLoopDetected)
			return loopResponse(req), nil
		}
		return resp, err
	}
	rt.p.setStatus(e, resp.StatusCode)
	switch {
	case resp.StatusCode == http.StatusSwitchingProtocols:
		if rwc, ok := resp.Body.(interface {
			Read([]byte) (int, error)
			Write([]byte) (int, error)
			Close() error
		}); ok {
			resp.Body = &wsBody{ReadWriteCloser: rwc, e: e}
			e.upgraded.Store(true)
			proto := ProtoWebSocket
			if e.client != nil && e.info.Protocol != ProtoHTTP {
				proto = ProtoWebSocketMITM
			}
			rt.p.setProtocol(e, proto)
		}
	case resp.Body != nil && resp.Body != http.NoBody:
		e.hasBody.Store(true)
		rb := &respBody{ReadCloser: resp.Body, e: e, p: rt.p}
		resp.Body = rb
		switch {
		case !e.readAhead || e.client == nil || req.Method == http.MethodHead:
		case resp.ContentLength > 0 && resp.ContentLength <= holdMax:
			// goproxy writes this MITM response next, head then body.
			e.client.holdNextWrite()
		case resp.ContentLength < 0 && len(resp.TransferEncoding) > 0:
			// goproxy writes a chunked body chunk by chunk.
			resp.Body = streamBody{rb}
		}
	}
	return resp, nil
}

// upstreamHop returns the request to send upstream. A client's
// "Connection: close" (req.Close) is hop-by-hop: it closes the client's
// connection, which goproxy and net/http still do since they keep req, but
// not the upstream one, which goes back to the idle pool instead of costing a
// new TCP and TLS handshake on the next request (net/http/httputil's
// ReverseProxy does the same).
func upstreamHop(req *http.Request) *http.Request {
	if !req.Close {
		return req
	}
	out := req.WithContext(req.Context()) // a shallow copy
	out.Close = false
	return out
}

// WrapRoundTripper returns rt wrapped so that the request of ctx keeps being
// counted. Use it when a handler of yours sets ctx.RoundTripper after
// proxywatch's own handler ran:
//
//	ctx.RoundTripper = p.WrapRoundTripper(ctx, myRT)
//
// A nil rt means goproxy's transport.
func (p *Proxy) WrapRoundTripper(ctx *goproxy.ProxyCtx, rt goproxy.RoundTripper) goproxy.RoundTripper {
	p.reg.mu.Lock()
	e := p.reg.live[ConnID(ctx.Session)]
	p.reg.mu.Unlock()
	if e == nil {
		return rt
	}
	if c, ok := rt.(*countingRT); ok {
		rt = c.next
	}
	return &countingRT{p: p, e: e, next: rt}
}

// onResponse records the status of a response that no round trip of ours
// produced (a handler answered the request itself).
func (p *Proxy) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	if resp == nil {
		return resp
	}
	p.reg.mu.Lock()
	if e := p.reg.live[ConnID(ctx.Session)]; e != nil && e.info.Status == 0 {
		e.info.Status = resp.StatusCode
	}
	p.reg.mu.Unlock()
	return resp
}

// onConnect notes the CONNECT on its client connection and lets the next
// handler decide what to do with it.
func (p *Proxy) onConnect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	id := ConnID(ctx.Session)
	p.noteSession(id)
	if tc := connFrom(ctx.Req.Context()); tc != nil {
		tc.noteConnect(id, time.Now())
	}
	return nil, ""
}

// wrapConnectDial makes goproxy dial CONNECT tunnels through proxywatch, so
// that a tunnel passed through is a connection with exact byte counts. Dial
// hooks that were already set (ConnectDialWithReq, ConnectDial, which goproxy
// sets from HTTPS_PROXY, or the transport's DialContext) are kept and called.
func (p *Proxy) wrapConnectDial() {
	withReq, plain, tr := p.gp.ConnectDialWithReq, p.gp.ConnectDial, p.gp.Tr
	dial := func(req *http.Request, network, addr string) (net.Conn, error) {
		switch {
		case withReq != nil:
			return withReq(req, network, addr)
		case plain != nil:
			return plain(network, addr)
		case tr != nil && tr.DialContext != nil:
			return tr.DialContext(req.Context(), network, addr)
		}
		d := net.Dialer{Timeout: defaultDialTimeout}
		return d.DialContext(req.Context(), network, addr)
	}
	p.gp.ConnectDialWithReq = func(req *http.Request, network, addr string) (net.Conn, error) {
		tc := connFrom(req.Context())
		e := &entry{info: connIdent{
			Protocol: ProtoTunnel,
			Method:   http.MethodConnect,
			Host:     addr,
			URL:      req.URL.Host,
			Client:   req.RemoteAddr,
			Start:    time.Now(),
		}, client: tc}
		if tc != nil {
			if id, start, ok := tc.connectNote(); ok {
				e.info.ID, e.info.Start = id, start
			}
		}
		if e.info.ID == 0 {
			return dial(req, network, addr) // not a CONNECT we saw: leave it alone
		}
		p.open(e)
		c, err := p.checkDial(dial(req, network, addr))
		if err != nil {
			p.end(e, EndUpstreamError, err)
			return nil, err
		}
		tcn := &tunnelConn{Conn: c, e: e, p: p}
		var out net.Conn = tcn
		if _, ok := c.(halfCloser); ok {
			out = &tunnelTCPConn{tcn}
		}
		p.reg.mu.Lock()
		e.upstream = tcn
		ended := e.ended
		p.reg.mu.Unlock()
		if ended { // closed while dialing
			_ = out.Close()
			return nil, net.ErrClosed
		}
		return out, nil
	}
}

// tunnelDone ends a tunnel's connection when goproxy closed its upstream side.
func (p *Proxy) tunnelDone(e *entry) {
	reason, err := EndCompleted, error(nil)
	switch {
	case e.bodyErr.Load() != nil:
		reason, err = EndUpstreamError, e.bodyErr.Load().err
	case e.client.failure() != nil:
		reason, err = EndClientClosed, e.client.failure()
	}
	p.end(e, reason, err)
}

// noteSession remembers the highest goproxy session seen, to place the 16-bit
// session numbers of log lines.
func (p *Proxy) noteSession(id ConnID) {
	for {
		cur := p.maxSession.Load()
		if int64(id) <= cur || p.maxSession.CompareAndSwap(cur, int64(id)) {
			return
		}
	}
}

// resolveSession maps a session number as goproxy prints it (the low 16 bits)
// to a connection: the newest live one with those low bits if there is one
// (among the last sessionPeriods×65536 sessions), else the
// session nearest the newest one seen (log lines come just before or after
// the hook that sees the session).
func (p *Proxy) resolveSession(s int64) ConnID {
	if s <= 0 || s > 0xFFFF {
		return 0
	}
	if id, ok := p.reg.liveSession(s, p.maxSession.Load()); ok {
		return id
	}
	next := p.maxSession.Load() + 1
	c := next&^0xFFFF | s
	for _, alt := range []int64{c - 0x10000, c + 0x10000} {
		if alt > 0 && abs(alt-next) < abs(c-next) {
			c = alt
		}
	}
	if c <= 0 {
		return 0
	}
	return ConnID(c)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
