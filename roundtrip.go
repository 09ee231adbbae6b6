package proxywatch

import (
	"context"
	"errors"
	"net/http"

	"github.com/elazarl/goproxy"
)

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
		e.rtErr.CompareAndSwap(nil, boxErr(err))
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

// upstreamBroke handles an upstream body that failed mid-way. The client
// connection is closed at once: in plain mode net/http would otherwise end a
// chunked response normally, and the client would take a truncated body for a
// complete one.
func (p *Proxy) upstreamBroke(e *entry, err error) {
	if !e.bodyErr.CompareAndSwap(nil, boxErr(err)) {
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
