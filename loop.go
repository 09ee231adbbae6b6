package proxywatch

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/elazarl/goproxy"
)

// A proxy that forwards a request to itself forwards it again, for ever:
// one request becomes an unbounded chain of connections until the process
// runs out of sockets. It happens as soon as proxywatch runs in an
// environment whose HTTP_PROXY or HTTPS_PROXY points at it (set to route
// other programs through it), which goproxy and net/http obey, or when a
// client asks it for its own address. So every connection the proxy dials
// upstream is checked, once connected: one that reached the proxy's own
// listener is closed at once and the request fails with errLoop, which a
// plain or MITM client sees as 508 Loop Detected and a CONNECT as a failed
// tunnel. (A loop through another proxy, A to B to A, is not seen.)

// errLoop is the error of a dial that reached the proxy's own listener.
var errLoop = errors.New("proxywatch: the request loops back to this proxy (is HTTP_PROXY or HTTPS_PROXY set to this proxy's own address?)")

// selfAddrs is where the proxy listens: the listener's address, and when
// that is a wildcard address, the machine's own IP addresses on its port.
type selfAddrs struct {
	addr *net.TCPAddr
	ips  []net.IP // with a wildcard listener: the addresses it answers on
}

// setSelf records the address of the listener Serve accepts on.
func (p *Proxy) setSelf(a net.Addr) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return
	}
	s := &selfAddrs{addr: ta}
	if ta.IP.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					s.ips = append(s.ips, n.IP)
				}
			}
		}
	}
	p.self.Store(s)
}

// isSelf reports whether a is the proxy's own listener.
func (p *Proxy) isSelf(a net.Addr) bool {
	s := p.self.Load()
	ta, ok := a.(*net.TCPAddr)
	if s == nil || !ok || ta.Port != s.addr.Port {
		return false
	}
	if !s.addr.IP.IsUnspecified() {
		return ta.IP.Equal(s.addr.IP)
	}
	if ta.IP.IsLoopback() || ta.IP.IsUnspecified() {
		return true
	}
	for _, ip := range s.ips {
		if ip.Equal(ta.IP) {
			return true
		}
	}
	return false
}

// checkDial closes c and returns errLoop when c reached the proxy itself;
// any other connection it dialed gets the proxy's socket options (tuneSocket).
func (p *Proxy) checkDial(c net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return c, err
	}
	if p.isSelf(c.RemoteAddr()) {
		_ = c.Close()
		return nil, errLoop
	}
	tuneSocket(c)
	return c, nil
}

// guardDials makes the transport's dials go through checkDial. goproxy dials
// with it too: for CONNECTs it chains to an upstream proxy (HTTPS_PROXY).
func (p *Proxy) guardDials() {
	tr := p.gp.Tr
	if tr == nil {
		return
	}
	next := tr.DialContext
	if next == nil {
		//lint:ignore SA1019 a user's transport may still dial with Dial
		if tr.Dial != nil {
			return // setting DialContext would replace it: its dials are left alone
		}
		next = (&net.Dialer{Timeout: defaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return p.checkDial(next(ctx, network, addr))
	}
}

// loopResponse is what a plain or MITM client gets for a request that came
// back to the proxy.
func loopResponse(req *http.Request) *http.Response {
	return goproxy.NewResponse(req, "text/plain; charset=utf-8", http.StatusLoopDetected, errLoop.Error()+"\n")
}
