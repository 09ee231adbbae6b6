package proxywatch

import (
	"context"
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
		e.client = p.clients.lookup(req.RemoteAddr)
		if e.client != nil {
			e.info.Parent, _, _ = e.client.connectNote()
			// The end of the previous response may still be held
			// (streamBody) when this request was read with it.
			e.client.flushHeld()
		}
	}

	// A MITM request gets a context of ours, so that CloseConnection can
	// cancel its upstream round trip; it keeps the values of goproxy's
	// context but not its cancellation, and requestDone cancels it. A plain
	// request needs none: closing its client connection (entry.kill) makes
	// net/http cancel the request's own context.
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
		// (its websocket copy returns without closing it): without this the
		// client would wait forever.
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
