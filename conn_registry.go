package proxywatch

import (
	"time"
)

// ConnID identifies one connection for the life of its Proxy. It is the goproxy
// session number of the exchange (ctx.Session), so it is never reused, and log
// lines that goproxy prints for the exchange can be joined to it.
type ConnID int64

// Protocol says what kind of proxied unit a connection is. See the package
// documentation for what each kind counts.
type Protocol string

// The protocols a connection can have. A plain or MITM request that upgrades to
// a WebSocket changes protocol when the upstream answers 101.
const (
	ProtoHTTP          Protocol = "HTTP"           // one plain-HTTP request/response exchange
	ProtoTunnel        Protocol = "HTTPS-Tunnel"   // a CONNECT tunnel passed through untouched
	ProtoHTTPSMITM     Protocol = "HTTPS-MITM"     // one decrypted request inside a MITM'd CONNECT
	ProtoHTTPMITM      Protocol = "HTTP-MITM"      // one plain-HTTP request inside a MITM'd CONNECT
	ProtoWebSocket     Protocol = "WebSocket"      // a plain-HTTP WebSocket upgrade, after the 101
	ProtoWebSocketMITM Protocol = "WebSocket-MITM" // a WebSocket upgrade inside a MITM'd CONNECT
)

// EndReason says why a connection ended. The empty reason means it is still live.
type EndReason string

// The reasons a connection can end with. Observers must accept reasons they do
// not know: new ones may be added.
const (
	EndCompleted     EndReason = "completed"      // both sides finished normally
	EndClientClosed  EndReason = "client closed"  // the client went away or reset first
	EndUpstreamError EndReason = "upstream error" // dial, TLS, reset or short body on the upstream side
	EndClosedByAPI   EndReason = "closed by API"  // CloseConnection, CloseConnections or CloseAll
	EndIdleTimeout   EndReason = "idle timeout"   // no byte moved for Options.IdleTimeout
	EndShutdown      EndReason = "shutdown"       // Shutdown or Close of the Proxy
)

// ConnInfo is a snapshot of one connection. It is a value: later changes to the
// connection are not reflected in a ConnInfo already returned.
type ConnInfo struct {
	ID       ConnID
	Parent   ConnID   // for MITM requests: the CONNECT they came through; 0 otherwise
	Protocol Protocol // see the Proto constants
	Method   string   // HTTP method; "CONNECT" for tunnels
	Host     string   // host:port the client asked for
	URL      string   // full URL for requests; host:port for tunnels
	Client   string   // client address (ip:port) as the proxy saw it
	Start    time.Time
	End      time.Time // zero while live

	// Up counts client-to-upstream bytes and Down upstream-to-client bytes, as
	// defined in the package documentation (# Counting). Live values are read
	// atomically when the snapshot is taken; after End they are final.
	Up, Down uint64

	// UpRate and DownRate are bytes per second over the sampler's last real
	// interval (not an assumed one). Zero until the first sample after Start.
	UpRate, DownRate float64

	Status    int       // HTTP status the upstream answered; 0 for tunnels and failures
	EndReason EndReason // empty while live
	Err       string    // the error behind EndUpstreamError or EndClientClosed, if any
}

// Live reports whether the connection had not ended when the snapshot was taken.
func (c ConnInfo) Live() bool { return c.End.IsZero() }

// Duration is how long the connection lived, or has lived so far at now when live.
func (c ConnInfo) Duration(now time.Time) time.Duration {
	if c.End.IsZero() {
		return now.Sub(c.Start)
	}
	return c.End.Sub(c.Start)
}

// ConnState is the lifecycle step a ConnEvent reports.
type ConnState int

// The lifecycle steps. ConnClosed is terminal: no event follows it for the same
// ID. Observers must ignore states they do not know.
const (
	ConnOpened ConnState = iota + 1 // the connection entered the live set
	ConnClosed                      // it left the live set; Conn holds final bytes and EndReason
)

// String returns "opened" or "closed".
func (s ConnState) String() string {
	switch s {
	case ConnOpened:
		return "opened"
	case ConnClosed:
		return "closed"
	}
	return "unknown"
}

// ConnEvent reports one lifecycle step of one connection.
type ConnEvent struct {
	State ConnState
	Conn  ConnInfo
}

// ConnObserver receives connection lifecycle events. See the package
// documentation (# Observers) for the delivery contract.
type ConnObserver interface {
	ObserveConn(ConnEvent)
}

// ConnObserverFunc adapts a function to ConnObserver.
type ConnObserverFunc func(ConnEvent)

// ObserveConn calls f(e). It implements ConnObserver.
func (f ConnObserverFunc) ObserveConn(e ConnEvent) { f(e) }

// MultiConnObserver returns an observer that passes each event to every non-nil
// observer in obs, in order.
func MultiConnObserver(obs ...ConnObserver) ConnObserver {
	return ConnObserverFunc(func(e ConnEvent) {
		for _, o := range obs {
			if o != nil {
				o.ObserveConn(e)
			}
		}
	})
}
