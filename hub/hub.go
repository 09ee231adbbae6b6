package hub

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/internal/defaults"
	"github.com/proxywatch/proxywatch/internal/version"
	"github.com/proxywatch/proxywatch/internal/webauth"
)

// Options configures a Hub. The zero value (or a nil *Options) is a working
// configuration with a random secret; every field documents its default.
type Options struct {
	// Token is the secret a client must present, as ?token= or as
	// "Authorization: Bearer". Empty means New generates a random 128-bit one
	// (hex); read it with Hub.Token and hand it to the dashboard.
	Token string

	// AllowedOrigins lists the browser origins, besides the hub's own, that
	// may open a socket, exactly as browsers send them, e.g.
	// "http://localhost:5173" for a Vite dev server. A request whose Origin
	// host equals its Host (same origin) and a request with no Origin header
	// (not a browser) are always allowed; the origin "null" never is.
	AllowedOrigins []string

	// TrafficInterval is the period of traffic messages, rounded to whole
	// samples of the Proxy's sampler (proxywatch.Options.SampleInterval):
	// each message sums the samples since the previous one, so a period
	// shorter than the sampler's gives one message per sample. Zero means one
	// second.
	TrafficInterval time.Duration

	// ConnectionsInterval is the period of connections messages. Zero means
	// two seconds.
	ConnectionsInterval time.Duration

	// EventInterval is the period of eventBatch messages (topic
	// eventBatches): each carries the events since the previous one, and
	// none is sent when there were none. A connection that opens and closes
	// within one interval is sent once, as its closed event, which carries
	// everything its opened event did. Zero means 100 ms.
	EventInterval time.Duration

	// LogBacklog is how many of the latest log records are kept for replay
	// on subscribe. Records at INFO and above are always kept; records below
	// INFO only while some client is subscribed to logs at their level, since
	// the Hub tells the Proxy (through Level) not to make records nobody
	// wants. Zero means 200; negative keeps none.
	LogBacklog int

	// SendQueue is how many messages may wait for each client. A client whose
	// queue is full is closed with 1008 (policy violation): it can reconnect
	// and resume. Zero means 256.
	SendQueue int

	// MaxMessageBytes is the largest client frame read; a larger one closes
	// the socket with 1009 (message too big). Zero means 64 KiB.
	MaxMessageBytes int64

	// WriteWait bounds every write to a client. Zero means 10 seconds.
	WriteWait time.Duration

	// PongWait is how long a client may stay silent, pongs included, before
	// it is considered gone; the hub pings every PongWait*9/10. Zero means
	// 60 seconds.
	PongWait time.Duration

	// MaxClients is how many sockets may be open at once; further upgrade
	// requests get 503. Zero means 64.
	MaxClients int

	// ErrorLog receives what goes wrong that a caller cannot see otherwise:
	// clients dropped for being slow, unexpected socket errors. Nil means
	// such errors are discarded.
	ErrorLog *slog.Logger
}

// Defaults of Options.
const (
	defaultTrafficInterval     = time.Second
	defaultConnectionsInterval = 2 * time.Second
	defaultEventInterval       = 100 * time.Millisecond
	defaultLogBacklog          = 200
	defaultSendQueue           = 256
	defaultMaxMessageBytes     = 64 << 10
	defaultWriteWait           = 10 * time.Second
	defaultPongWait            = 60 * time.Second
	defaultMaxClients          = 64
)

// closeGrace is how long a closing socket waits for the peer's close frame
// before the TCP connection is cut, and how long Close waits for clients to
// take their 1001 before it cuts them.
const closeGrace = time.Second

// source is what the Hub needs of a *proxywatch.Proxy.
type source interface {
	Stats() proxywatch.Stats
	Connections() []proxywatch.ConnInfo
	History() []proxywatch.ConnInfo
	CloseConnection(id proxywatch.ConnID) (proxywatch.ConnInfo, bool)
	CloseConnections(match func(proxywatch.ConnInfo) bool) []proxywatch.ConnInfo
	Observe(o any) (stop func())
}

var _ source = (*proxywatch.Proxy)(nil)

// Hub serves the WebSocket push protocol (PROTOCOL.md) for one Proxy. Create
// it with New, mount it with http.Handle, and Close it before or after the
// Proxy. All methods are safe for concurrent use.
type Hub struct {
	src      source
	auth     *webauth.Checker
	upgrader websocket.Upgrader
	log      *slog.Logger

	trafficEvery, connsEvery time.Duration
	eventsEvery              time.Duration
	backlog                  int
	sendQueue                int
	maxMessage               int64
	writeWait, pongWait      time.Duration
	maxClients               int

	stopObserve func()
	done        chan struct{} // closed by Close: the ticker goroutine returns
	wg          sync.WaitGroup
	closeOnce   sync.Once

	mu      sync.Mutex
	clients map[*client]struct{} // subscribed sockets, until dropped
	// topics is the union of the clients' topics, so that an event, at
	// thousands a second, learns who wants it without visiting every client.
	topics  topicSet
	running map[*client]struct{} // sockets whose writer has not ended yet
	pending int                  // upgrades in progress, counted against maxClients
	closed  bool                 // set by Close
	ring    logRing
	lastSeq uint64  // seq of the newest log record seen; 0 before the first
	lost    uint64  // records never seen since the newest kept one (or the start)
	events  []Event // for the eventBatches topic, since the last batch
	// opened indexes the opened events in events, so that a closed event
	// can take its place; a superseded opened event has Event "".
	opened map[proxywatch.ConnID]int

	// keep is the lowest level kept and wanted: the lowest level of any log
	// subscriber, never above INFO. Written under mu, read by Level without it.
	keep slog.LevelVar

	// deltaMu orders the connectionsDelta pushes and the full lists of new
	// subscribers; it is taken before mu, never after.
	deltaMu sync.Mutex
	delta   deltaState

	// owned by the goroutine that delivers the Proxy's samples (ObserveTraffic)
	lastUp, lastDown uint64
	lastTraffic      time.Time
}

// New returns a Hub that pushes p's traffic, connections and logs, and starts
// its ticker goroutine; Close stops it. New registers the Hub with p.Observe,
// so the Hub sees log records and connection events from now on; Close
// removes it again.
func New(p *proxywatch.Proxy, opts *Options) *Hub {
	return newHub(p, opts)
}

func newHub(src source, opts *Options) *Hub {
	var o Options
	if opts != nil {
		o = *opts
	}
	h := &Hub{
		src:          src,
		auth:         webauth.New(webauth.Policy{Token: o.Token, AllowedOrigins: o.AllowedOrigins}),
		log:          o.ErrorLog,
		trafficEvery: defaults.Or(o.TrafficInterval, defaultTrafficInterval),
		connsEvery:   defaults.Or(o.ConnectionsInterval, defaultConnectionsInterval),
		eventsEvery:  defaults.Or(o.EventInterval, defaultEventInterval),
		backlog:      o.LogBacklog,
		sendQueue:    defaults.Or(o.SendQueue, defaultSendQueue),
		maxMessage:   defaults.Or(o.MaxMessageBytes, defaultMaxMessageBytes),
		writeWait:    defaults.Or(o.WriteWait, defaultWriteWait),
		pongWait:     defaults.Or(o.PongWait, defaultPongWait),
		maxClients:   defaults.Or(o.MaxClients, defaultMaxClients),
		done:         make(chan struct{}),
		clients:      make(map[*client]struct{}),
		running:      make(map[*client]struct{}),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case h.backlog == 0:
		h.backlog = defaultLogBacklog
	case h.backlog < 0:
		h.backlog = 0
	}
	h.ring.entries = make([]logEntry, h.backlog)
	h.upgrader = websocket.Upgrader{
		CheckOrigin: h.auth.OriginAllowed, // checked before already; kept as a second lock
	}

	st := src.Stats()
	h.lastUp, h.lastDown, h.lastTraffic = st.Up, st.Down, time.Now()
	h.stopObserve = src.Observe(h)
	h.wg.Add(1)
	go h.tick()
	return h
}

// Token returns the secret clients must present: Options.Token, or the one New
// generated.
func (h *Hub) Token() string { return h.auth.Token() }

// Clients returns the number of sockets currently served.
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// ServeHTTP upgrades an authorized request to a WebSocket and serves the
// protocol on it until the client leaves or the Hub is closed. A request
// without the secret gets 401, one from a foreign origin 403, one beyond
// MaxClients or after Close 503; none of them is upgraded.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.auth.Matches(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="proxywatch"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if !h.auth.OriginAllowed(r) {
		http.Error(w, "forbidden origin", http.StatusForbidden)
		return
	}
	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		http.Error(w, "hub closed", http.StatusServiceUnavailable)
		return
	case len(h.clients)+h.pending >= h.maxClients:
		h.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many clients", http.StatusServiceUnavailable)
		return
	}
	h.pending++
	h.mu.Unlock()

	conn, err := h.upgrader.Upgrade(w, r, nil) // on error it has answered already
	h.mu.Lock()
	h.pending--
	if err != nil {
		h.mu.Unlock()
		return
	}
	if h.closed {
		h.mu.Unlock()
		conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "shutdown"), time.Now().Add(closeGrace))
		conn.Close()
		return
	}
	c := newClient(h, conn)
	c.send <- outgoing{frame: h.helloFrameLocked()} // the queue is empty: never blocks
	h.clients[c] = struct{}{}
	h.running[c] = struct{}{}
	h.wg.Add(2)
	h.mu.Unlock()
	go c.writePump()
	go c.readPump()
}

// helloFrameLocked encodes hello; h.mu is held so that LogSeq is exact.
func (h *Hub) helloFrameLocked() []byte {
	return h.mustEncode(TypeHello, Hello{
		Protocol: ProtocolVersion,
		Server:   version.String(),
		Intervals: Intervals{
			Traffic:     h.trafficEvery.Milliseconds(),
			Connections: h.connsEvery.Milliseconds(),
			Events:      h.eventsEvery.Milliseconds(),
		},
		Topics:          allTopics,
		Actions:         allActions,
		LogSeq:          h.lastSeq,
		LogBacklog:      h.backlog,
		MaxMessageBytes: h.maxMessage,
	}, nil)
}

// Close closes every client with 1001 (going away), stops the ticker,
// removes the Hub from its Proxy and waits for every goroutine the Hub
// started; clients that have not completed the close handshake within two
// seconds are cut. Later upgrade requests get 503. Close is idempotent and
// returns nil.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		for c := range h.clients {
			h.dropLocked(c, websocket.CloseGoingAway, "shutdown")
		}
		h.mu.Unlock()

		close(h.done)
		h.stopObserve()

		done := make(chan struct{})
		go func() {
			h.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * closeGrace):
			h.mu.Lock()
			for c := range h.running {
				c.conn.NetConn().Close() // unblocks a writer stuck on a full TCP window
			}
			h.mu.Unlock()
			<-done
		}
	})
	return nil
}

// mustEncode encodes a server frame. The types encoded here cannot fail to
// encode; if one ever does, the error is logged and an error frame sent.
func (h *Hub) mustEncode(typ string, data any, ref json.RawMessage) []byte {
	b, err := encodeFrame(typ, data, ref)
	if err != nil {
		h.log.Error("hub: encoding a message", "type", typ, "err", err)
		b, _ = encodeFrame(TypeError, Error{Code: "internal", Message: "encoding failed"}, ref)
	}
	return b
}

var (
	_ http.Handler               = (*Hub)(nil)
	_ io.Closer                  = (*Hub)(nil)
	_ proxywatch.TrafficObserver = (*Hub)(nil)
	_ proxywatch.ConnObserver    = (*Hub)(nil)
	_ proxywatch.LogObserver     = (*Hub)(nil)
	_ slog.Leveler               = (*Hub)(nil)
)
