package hub

import (
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
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

	// TrafficInterval is the period of traffic messages. Zero means one
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

	// owned by the ticker goroutine
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

// tick is the one goroutine that pushes traffic and connections.
func (h *Hub) tick() {
	defer h.wg.Done()
	traffic := time.NewTicker(h.trafficEvery)
	defer traffic.Stop()
	conns := time.NewTicker(h.connsEvery)
	defer conns.Stop()
	events := time.NewTicker(h.eventsEvery)
	defer events.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-traffic.C:
			h.pushTraffic()
		case <-conns.C:
			h.pushConnections()
		case <-events.C:
			h.mu.Lock()
			h.flushEventsLocked()
			h.mu.Unlock()
		}
	}
}

// maxBatchEvents bounds an event batch: a batch this long is sent at once.
const maxBatchEvents = 4096

// flushEventsLocked sends the events gathered since the last batch, encoded
// once, to the eventBatches subscribers.
func (h *Hub) flushEventsLocked() {
	if len(h.events) == 0 {
		return
	}
	frame := appendEventBatchFrame(make([]byte, 0, eventBatchSize(h.events)), h.events)
	clear(h.events) // let the strings go
	h.events = h.events[:0]
	clear(h.opened)
	for c := range h.clients {
		if c.topics&topicEventBatches != 0 {
			h.enqueueLocked(c, outgoing{frame: frame})
		}
	}
}

// eventBatchSize estimates an eventBatch frame's size on the high side.
func eventBatchSize(events []Event) int {
	n := 64
	for i := range events {
		c := &events[i].Conn
		n += 32 + connEntryOverhead + len(c.Method) + len(c.Host) + len(c.URL) + len(c.Remote) +
			len(c.Protocol) + len(c.EndReason) + len(c.Error)
	}
	return n
}

// pushTraffic sends the bytes moved since the previous push, over the real
// elapsed time. The totals are read even with nobody subscribed, so that the
// first message after a subscribe covers one interval, not the hub's life.
func (h *Hub) pushTraffic() {
	st := h.src.Stats()
	now := time.Now()
	t := Traffic{
		Up:        delta(st.Up, h.lastUp),
		Down:      delta(st.Down, h.lastDown),
		UpTotal:   st.Up,
		DownTotal: st.Down,
		Live:      st.Live,
		Interval:  now.Sub(h.lastTraffic).Milliseconds(),
	}
	h.lastUp, h.lastDown, h.lastTraffic = st.Up, st.Down, now
	if !h.subscribed(topicTraffic) {
		return
	}
	h.broadcast(topicTraffic, h.mustEncode(TypeTraffic, t, nil))
}

func delta(now, before uint64) uint64 {
	if now < before {
		return 0
	}
	return now - before
}

// pushConnections sends the live set, encoded once for every subscriber of
// connections, and its delta, encoded once for every subscriber of
// connectionsDelta. The snapshot is not even taken when nobody is
// subscribed.
func (h *Hub) pushConnections() {
	full, delta := h.subscribed(topicConnections), h.subscribed(topicConnectionsDelta)
	h.deltaMu.Lock()
	defer h.deltaMu.Unlock()
	if !delta {
		h.delta.drop() // nobody holds the base any more
	}
	if !full && !delta {
		return
	}
	conns := sortedByID(h.src.Connections())
	if full {
		h.broadcast(topicConnections, h.connectionsFrame(conns))
	}
	if !delta {
		return
	}
	// The delta is encoded into the buffer kept for it and copied out at
	// its real size: the frame goes to the client queues, which may hold it
	// after the next tick, while the buffer, grown for the worst case, is
	// allocated once.
	h.delta.buf = h.delta.appendDeltaFrame(h.delta.buf[:0], conns)
	frame := bytes.Clone(h.delta.buf)
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if c.topics&topicConnectionsDelta != 0 && c.deltaReady {
			h.enqueueLocked(c, outgoing{frame: frame})
		}
	}
}

// startDelta queues the full list that a new connectionsDelta subscriber
// starts from. deltaMu orders it with the pushes: every delta c gets after
// it comes from a later snapshot.
func (h *Hub) startDelta(c *client) {
	h.deltaMu.Lock()
	defer h.deltaMu.Unlock()
	conns := sortedByID(h.src.Connections())
	frame := appendFullDeltaFrame(make([]byte, 0, connsFrameSize(conns)), conns)
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.gone || c.topics&topicConnectionsDelta == 0 {
		return
	}
	if !h.delta.valid {
		h.delta.reset(conns)
	}
	c.deltaReady = true
	h.enqueueLocked(c, outgoing{frame: frame})
}

// sortedByID sorts conns by id unless they are already, as a Proxy's are.
// The check reads the ids in place: a comparison function would copy two
// whole entries for each of 10,000 pairs every tick.
func sortedByID(conns []proxywatch.ConnInfo) []proxywatch.ConnInfo {
	for i := 1; i < len(conns); i++ {
		if conns[i].ID < conns[i-1].ID {
			slices.SortFunc(conns, cmpID)
			break
		}
	}
	return conns
}

func cmpID(a, b proxywatch.ConnInfo) int { return cmp.Compare(a.ID, b.ID) }

// connectionsFrame encodes a connections message.
func (h *Hub) connectionsFrame(conns []proxywatch.ConnInfo) []byte {
	return appendConnsFrame(make([]byte, 0, connsFrameSize(conns)), TypeConnections, conns, nil)
}

// connsFrameSize estimates the encoded size of a message listing conns, on
// the high side, so that thousands of entries are encoded into one buffer
// that never has to grow and be copied.
func connsFrameSize(conns []proxywatch.ConnInfo) int {
	n := 64
	for i := range conns {
		c := &conns[i]
		n += connEntryOverhead + len(c.Method) + len(c.Host) + len(c.URL) + len(c.Client) +
			len(c.Protocol) + len(c.EndReason) + len(c.Err)
	}
	return n
}

// connEntryOverhead is an encoded entry without its strings: keys, numbers
// and times.
const connEntryOverhead = 240

func (h *Hub) subscribed(t topicSet) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topics&t != 0
}

// updateTopicsLocked recomputes topics after a client subscribed or was
// dropped.
func (h *Hub) updateTopicsLocked() {
	var t topicSet
	for c := range h.clients {
		t |= c.topics
	}
	h.topics = t
}

// broadcast queues frame for every client subscribed to t.
func (h *Hub) broadcast(t topicSet, frame []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if c.topics&t != 0 {
			h.enqueueLocked(c, outgoing{frame: frame})
		}
	}
}

// ObserveConn pushes e as an event message to the clients subscribed to
// events, and adds it to the next eventBatch for those subscribed to
// eventBatches. It implements proxywatch.ConnObserver; the Proxy calls it.
func (h *Hub) ObserveConn(e proxywatch.ConnEvent) {
	ev, ok := EventFromConn(e)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if h.topics&topicEvents != 0 {
		frame := h.mustEncode(TypeEvent, ev, nil)
		for c := range h.clients {
			if c.topics&topicEvents != 0 {
				h.enqueueLocked(c, outgoing{frame: frame})
			}
		}
	}
	if h.topics&topicEventBatches != 0 {
		h.batchLocked(ev)
		if len(h.events) >= maxBatchEvents {
			h.flushEventsLocked()
		}
	}
}

// batchLocked adds ev to the pending event batch. A closed event whose
// connection's opened event is still pending supersedes it: at thousands of
// short requests a second, most connections open and close within one
// interval, and sending each once halves what every dashboard has to read,
// while no dashboard could have shown it live for longer than the interval.
func (h *Hub) batchLocked(ev Event) {
	switch ev.Event {
	case "opened":
		if h.opened == nil {
			h.opened = make(map[proxywatch.ConnID]int)
		}
		h.opened[ev.Conn.ID] = len(h.events)
	case "closed":
		if i, ok := h.opened[ev.Conn.ID]; ok {
			delete(h.opened, ev.Conn.ID)
			h.events[i] = Event{} // superseded: left out of the frame
		}
	}
	h.events = append(h.events, ev)
}

// Level returns the lowest log level the Hub wants now: the lowest level of
// any client subscribed to logs, and never above INFO, so that the backlog
// holds recent INFO and higher records for a dashboard that connects later.
// It implements slog.Leveler; a Proxy asks it before making a log record, so
// DEBUG lines cost nothing while no client wants them.
func (h *Hub) Level() slog.Level { return h.keep.Level() }

// updateLevelLocked recomputes Level after a subscription changed.
func (h *Hub) updateLevelLocked() {
	lo := slog.LevelInfo
	for c := range h.clients {
		if c.topics&topicLogs != 0 && c.level < lo {
			lo = c.level
		}
	}
	h.keep.Set(lo)
}

// ObserveLog keeps r in the backlog and pushes it to the clients subscribed
// to logs at r's level or below. Records the Hub missed (r.Dropped, or a gap
// in r.Seq) are announced to every log subscriber with a logsDropped message
// first. It implements proxywatch.LogObserver; the Proxy calls it. A record
// without a Seq (0, or not above the last one) is numbered by the Hub.
func (h *Hub) ObserveLog(r proxywatch.LogRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if r.Seq <= h.lastSeq {
		r.Seq = h.lastSeq + 1 + r.Dropped
	}
	missed := r.Dropped // for the first record: earlier gaps predate the Hub
	if h.lastSeq != 0 {
		missed = r.Seq - h.lastSeq - 1
	}
	h.lastSeq = r.Seq
	h.lost += missed
	// A record below keep is wanted by no client (keep is the lowest level of
	// any), so it is neither encoded nor kept: nobody who subscribes later
	// would have had it made, as a Proxy asks Level before making a record;
	// only one made for another observer gets here.
	wanted := r.Level >= h.keep.Level()
	var frame []byte
	if wanted {
		frame = h.mustEncode(TypeLog, LogFromRecord(r), nil)
		if h.backlog > 0 {
			h.ring.add(logEntry{seq: r.Seq, level: r.Level, lost: h.lost, frame: frame})
			h.lost = 0
		}
	}

	var droppedOnly, both [][]byte
	if missed > 0 {
		d := h.mustEncode(TypeLogsDropped, LogsDropped{Count: missed}, nil)
		droppedOnly, both = [][]byte{d}, [][]byte{d, frame}
	}
	for c := range h.clients {
		if c.topics&topicLogs == 0 {
			continue
		}
		pass := wanted && r.Level >= c.level
		switch {
		case missed > 0 && pass:
			h.enqueueLocked(c, outgoing{batch: both})
		case missed > 0:
			h.enqueueLocked(c, outgoing{batch: droppedOnly})
		case pass:
			h.enqueueLocked(c, outgoing{frame: frame})
		}
	}
}

// replayLocked appends to batch the backlog records at level or above that a
// subscriber should get: all of them without since, those after since with
// it. Every gap after since of records the Hub never had, or kept and then
// evicted from the backlog, becomes a logsDropped message at its place;
// records not kept because no client wanted their level are not losses and
// are not announced. Where the gap reaches back past the oldest record still
// held, its count is an upper bound (the seqs in between may include records
// that were never kept). A since above the newest seq comes from an earlier
// server: it is treated as absent.
func (h *Hub) replayLocked(batch [][]byte, level slog.Level, since *uint64) [][]byte {
	var prev uint64
	havePrev := since != nil && *since <= h.lastSeq
	if havePrev {
		prev = *since
	}
	gap := func(n uint64) {
		if n > 0 {
			batch = append(batch, h.mustEncode(TypeLogsDropped, LogsDropped{Count: n}, nil))
		}
	}
	h.ring.each(func(e *logEntry) {
		if havePrev {
			if e.seq <= prev {
				return
			}
			if between := e.seq - prev - 1; prev < h.ring.evicted {
				gap(between) // evicted records among them
			} else {
				gap(min(between, e.lost))
			}
		}
		prev, havePrev = e.seq, true
		if e.level >= level {
			batch = append(batch, e.frame)
		}
	})
	if havePrev && h.lastSeq > prev {
		if h.backlog == 0 {
			gap(h.lastSeq - prev) // nothing is kept: every record is missed
		} else {
			gap(min(h.lastSeq-prev, h.lost))
		}
	}
	return batch
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

// logEntry is one backlog record, encoded once.
type logEntry struct {
	seq   uint64
	level slog.Level
	lost  uint64 // records the Hub never saw between the previous kept one and this
	frame []byte
}

// logRing keeps the latest len(entries) log records.
type logRing struct {
	entries []logEntry
	next    int    // where the next record goes
	n       int    // records held
	evicted uint64 // seq of the newest record evicted; 0 if none
}

func (r *logRing) add(e logEntry) {
	if r.n == len(r.entries) {
		r.evicted = r.entries[r.next].seq
	}
	r.entries[r.next] = e
	r.next = (r.next + 1) % len(r.entries)
	if r.n < len(r.entries) {
		r.n++
	}
}

// each calls f for every record held, oldest first.
func (r *logRing) each(f func(*logEntry)) {
	start := r.next - r.n
	if start < 0 {
		start += len(r.entries)
	}
	for i := 0; i < r.n; i++ {
		f(&r.entries[(start+i)%len(r.entries)])
	}
}

var (
	_ http.Handler            = (*Hub)(nil)
	_ io.Closer               = (*Hub)(nil)
	_ proxywatch.ConnObserver = (*Hub)(nil)
	_ proxywatch.LogObserver  = (*Hub)(nil)
	_ slog.Leveler            = (*Hub)(nil)
)
