package proxywatch

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
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

// entry is one live connection in the registry. Its byte counters are the
// only state the I/O path touches; everything else is guarded by registry.mu.
//
// Every live connection holds one, so it is kept small (256 bytes, one size
// class of the allocator): it holds what a live connection needs, and the
// ConnInfo of a snapshot or of the end is made from it when asked for.
type entry struct {
	up, down atomic.Uint64

	info connIdent

	// How to really close it: the client connection (for MITM requests, the
	// CONNECT's connection), the tunnel's upstream, the request's context.
	client   *clientConn
	upstream *tunnelConn
	cancel   context.CancelFunc

	// Outcome, written by the I/O path, read when it ends.
	rtErr     atomic.Pointer[errorBox] // the round trip failed
	reqErr    atomic.Pointer[errorBox] // the client's request body failed mid-way
	bodyErr   atomic.Pointer[errorBox] // the upstream body or tunnel failed mid-way
	rtPending atomic.Bool              // the round trip is in flight
	hasBody   atomic.Bool              // the response had a body to copy
	bodyDone  atomic.Bool              // ... and it was read to EOF
	upgraded  atomic.Bool              // the upstream answered 101: a WebSocket

	ended bool
	// readAhead: an HTTP/1 request decrypted from a CONNECT, whose client
	// connection (the CONNECT's) nobody reads while it waits (watchClient)
	readAhead bool
	busy      bool // a plain request, counted in client.busy while live

	// Owned by the sampler (under registry.mu). sampled says that lastUp and
	// lastDown are the counts of the registry's last sample (at
	// registry.sampledAt); until then rates are measured from Start.
	sampled          bool
	upRate, downRate float64
	lastUp, lastDown uint64
}

// connIdent is what a live connection's ConnInfo holds besides its counts
// and rates: ID, Parent, Method, Host, URL, Client and Start never change
// once it is open; Protocol and Status change under registry.mu.
type connIdent struct {
	ID       ConnID
	Parent   ConnID
	Protocol Protocol
	Method   string
	Host     string
	URL      string
	Client   string
	Start    time.Time
	Status   int
}

// snapshot returns the ConnInfo of a live entry. Called under registry.mu.
func (e *entry) snapshot() ConnInfo {
	return ConnInfo{
		ID:       e.info.ID,
		Parent:   e.info.Parent,
		Protocol: e.info.Protocol,
		Method:   e.info.Method,
		Host:     e.info.Host,
		URL:      e.info.URL,
		Client:   e.info.Client,
		Start:    e.info.Start,
		Up:       e.up.Load(),
		Down:     e.down.Load(),
		UpRate:   e.upRate,
		DownRate: e.downRate,
		Status:   e.info.Status,
	}
}

// kill closes what the entry holds open, at once: both sockets are reset
// (resetOnClose), so that the client sees an error now, not after draining
// what its kernel had queued, and the upstream side is released with it.
// upstream is e.upstream as read under the registry lock: a tunnel's dial
// sets it concurrently (and closes it itself when it finds e ended).
func (e *entry) kill(upstream *tunnelConn) {
	if e.cancel != nil {
		e.cancel()
	}
	if upstream != nil {
		resetOnClose(upstream.Conn)
		_ = upstream.Close()
	}
	if e.client != nil {
		resetOnClose(e.client.Conn)
		_ = e.client.Close()
	}
}

// registry is the live set, the closed history and the closed totals.
type registry struct {
	mu       sync.Mutex
	live     map[ConnID]*entry
	history  []ConnInfo // ring of closed connections
	histNext int
	histLen  int

	closedUp, closedDown uint64
	opened, closed       uint64
	// changed is closed when the live set shrinks, if someone waits for that
	// (Shutdown, through waitChangeLocked): made only then, so that the end of
	// every connection costs no channel while nobody waits.
	changed chan struct{}

	sampledAt time.Time // when the sampler last measured the live entries' rates
}

func (r *registry) init(historySize int) {
	r.live = make(map[ConnID]*entry)
	if historySize > 0 {
		r.history = make([]ConnInfo, historySize)
	}
}

// waitChangeLocked returns a channel closed the next time the live set
// shrinks.
func (r *registry) waitChangeLocked() <-chan struct{} {
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.changed
}

func (r *registry) finishLocked(e *entry, now time.Time, reason EndReason, err error) (ConnInfo, bool) {
	if e.ended {
		return ConnInfo{}, false
	}
	e.ended = true
	if e.busy {
		e.client.busy.Add(-1)
	}
	info := e.snapshot()
	info.End = now
	info.EndReason = reason
	info.UpRate, info.DownRate = 0, 0
	if err != nil {
		info.Err = truncate(err.Error(), maxErrLen)
	}
	if r.live[info.ID] == e {
		delete(r.live, info.ID)
	}
	r.closedUp += info.Up
	r.closedDown += info.Down
	r.closed++
	if len(r.history) > 0 {
		r.history[r.histNext] = info
		r.histNext = (r.histNext + 1) % len(r.history)
		if r.histLen < len(r.history) {
			r.histLen++
		}
	}
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
	return info, true
}

// sessionPeriods bounds how far back liveSession looks: the connections of
// the last sessionPeriods×65536 sessions.
const sessionPeriods = 16

// liveSession returns the newest live connection whose ID has the low 16
// bits s (a session number as goproxy prints it), among IDs up to max, the
// highest seen. It looks the candidates up in the live set, newest first.
func (r *registry) liveSession(s, max int64) (ConnID, bool) {
	c := max&^0xFFFF | s
	if c > max {
		c -= 0x10000
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for range sessionPeriods {
		if c <= 0 {
			break
		}
		if _, ok := r.live[ConnID(c)]; ok {
			return ConnID(c), true
		}
		c -= 0x10000
	}
	return 0, false
}

// totals returns the bytes of every connection, closed and live.
func (r *registry) totalsLocked() (up, down uint64) {
	up, down = r.closedUp, r.closedDown
	for _, e := range r.live {
		up += e.up.Load()
		down += e.down.Load()
	}
	return up, down
}

func (r *registry) historyLocked() []ConnInfo {
	out := make([]ConnInfo, 0, r.histLen)
	start := r.histNext - r.histLen
	if start < 0 {
		start += len(r.history)
	}
	for i := 0; i < r.histLen; i++ {
		out = append(out, r.history[(start+i)%len(r.history)])
	}
	return out
}

// maxErrLen bounds the error text kept with a closed connection.
const maxErrLen = 512

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Connections returns a snapshot of the live connections, sorted by ID.
func (p *Proxy) Connections() []ConnInfo {
	p.reg.mu.Lock()
	out := make([]ConnInfo, 0, len(p.reg.live))
	for _, e := range p.reg.live {
		out = append(out, e.snapshot())
	}
	p.reg.mu.Unlock()
	slices.SortFunc(out, func(a, b ConnInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Connection returns the live or recently closed connection with the given id.
func (p *Proxy) Connection(id ConnID) (ConnInfo, bool) {
	p.reg.mu.Lock()
	defer p.reg.mu.Unlock()
	if e, ok := p.reg.live[id]; ok {
		return e.snapshot(), true
	}
	for i := 1; i <= p.reg.histLen; i++ {
		j := (p.reg.histNext - i + len(p.reg.history)) % len(p.reg.history)
		if p.reg.history[j].ID == id {
			return p.reg.history[j], true
		}
	}
	return ConnInfo{}, false
}

// History returns the most recently closed connections, oldest first, at most
// Options.History of them.
func (p *Proxy) History() []ConnInfo {
	p.reg.mu.Lock()
	defer p.reg.mu.Unlock()
	return p.reg.historyLocked()
}

// CloseConnection closes the live connection id: the client sees an error, the
// upstream side is released and the connection leaves the live set at once with
// EndClosedByAPI. It reports what was closed, and false if id was not live.
func (p *Proxy) CloseConnection(id ConnID) (ConnInfo, bool) {
	closed := p.closeWhere(EndClosedByAPI, func(e *entry) bool { return e.info.ID == id })
	if len(closed) == 0 {
		return ConnInfo{}, false
	}
	return closed[0], true
}

// CloseConnections closes every live connection for which match returns
// true, as CloseConnection does, and returns what it closed, sorted by ID. A
// nil match closes nothing: closing everything is CloseAll, never the result
// of a filter that went missing.
func (p *Proxy) CloseConnections(match func(ConnInfo) bool) []ConnInfo {
	if match == nil {
		return nil
	}
	return p.closeWhere(EndClosedByAPI, func(e *entry) bool { return match(e.snapshot()) })
}

// CloseAll closes every live connection, as CloseConnection does, and returns
// what it closed, sorted by ID.
func (p *Proxy) CloseAll() []ConnInfo {
	return p.closeWhere(EndClosedByAPI, func(*entry) bool { return true })
}

// closeWhere ends the matching live entries with reason, then closes what they
// hold open. The entries leave the live set before any socket is touched.
func (p *Proxy) closeWhere(reason EndReason, match func(*entry) bool) []ConnInfo {
	now := time.Now()
	var victims []*entry
	var infos []ConnInfo
	p.reg.mu.Lock()
	for _, e := range p.reg.live {
		if match(e) {
			victims = append(victims, e)
		}
	}
	upstreams := make([]*tunnelConn, len(victims))
	for i, e := range victims {
		upstreams[i] = e.upstream
		if info, ok := p.reg.finishLocked(e, now, reason, nil); ok {
			infos = append(infos, info)
			p.emitConn(ConnEvent{State: ConnClosed, Conn: info})
		}
	}
	p.reg.mu.Unlock()
	for i, e := range victims {
		e.kill(upstreams[i])
	}
	slices.SortFunc(infos, func(a, b ConnInfo) int { return cmp.Compare(a.ID, b.ID) })
	return infos
}

// open registers e and tells the observers. Events are queued under the
// registry lock (queueing never blocks), so an observer always sees a
// connection's opened event before its closed one.
func (p *Proxy) open(e *entry) {
	p.noteSession(e.info.ID)
	p.reg.mu.Lock()
	p.reg.live[e.info.ID] = e
	p.reg.opened++
	p.emitConn(ConnEvent{State: ConnOpened, Conn: e.snapshot()})
	p.reg.mu.Unlock()
}

// end finishes e with reason unless it already ended, and tells the observers.
func (p *Proxy) end(e *entry, reason EndReason, err error) {
	p.reg.mu.Lock()
	p.endLocked(e, reason, err)
	p.reg.mu.Unlock()
}

// endLocked is end, called under registry.mu.
func (p *Proxy) endLocked(e *entry, reason EndReason, err error) {
	if info, ok := p.reg.finishLocked(e, time.Now(), reason, err); ok {
		p.emitConn(ConnEvent{State: ConnClosed, Conn: info})
	}
}

func (p *Proxy) setProtocol(e *entry, proto Protocol) {
	p.reg.mu.Lock()
	if !e.ended {
		e.info.Protocol = proto
	}
	p.reg.mu.Unlock()
}

func (p *Proxy) setStatus(e *entry, status int) {
	p.reg.mu.Lock()
	if !e.ended {
		e.info.Status = status
	}
	p.reg.mu.Unlock()
}
