package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
)

// topicSet is a client's subscription, one bit per topic.
type topicSet uint8

const (
	topicTraffic topicSet = 1 << iota
	topicConnections
	topicLogs
	topicEvents
	topicEventBatches
	topicConnectionsDelta
)

var topicBits = map[string]topicSet{
	TopicTraffic:          topicTraffic,
	TopicConnections:      topicConnections,
	TopicLogs:             topicLogs,
	TopicEvents:           topicEvents,
	TopicEventBatches:     topicEventBatches,
	TopicConnectionsDelta: topicConnectionsDelta,
}

// outgoing is one slot of a client's queue: a frame, or a batch of frames
// written in order (a subscribe answer with its log replay takes one slot, so
// a replay of the whole backlog cannot overflow the queue by itself). Frames
// are shared between clients and never modified.
type outgoing struct {
	frame []byte
	batch [][]byte
}

// client is one socket. Its writePump is the only writer of conn (apart from
// control frames, which gorilla allows concurrently) and its readPump the only
// reader.
type client struct {
	h        *Hub
	conn     *websocket.Conn
	send     chan outgoing
	quit     chan struct{} // closed by dropLocked: the writer sends closeCode and ends
	readDone chan struct{} // closed when readPump returns

	// Set once by dropLocked before it closes quit; read by the writer after.
	closeCode int
	closeText string

	// Guarded by h.mu.
	topics topicSet
	level  slog.Level
	gone   bool // dropped: no more frames are queued

	// deltaReady is set once the full list of a connectionsDelta
	// subscription is queued: deltas follow it, never precede it.
	deltaReady bool
}

func newClient(h *Hub, conn *websocket.Conn) *client {
	return &client{
		h:        h,
		conn:     conn,
		send:     make(chan outgoing, h.sendQueue),
		quit:     make(chan struct{}),
		readDone: make(chan struct{}),
		level:    slog.LevelInfo,
	}
}

// enqueueLocked queues m for c without blocking; a full queue drops c with
// 1008. h.mu is held.
func (h *Hub) enqueueLocked(c *client, m outgoing) {
	if c.gone {
		return
	}
	select {
	case c.send <- m:
	default:
		h.log.Warn("hub: dropping a client that does not keep up",
			"remote", c.conn.RemoteAddr().String(), "queue", cap(c.send))
		h.dropLocked(c, websocket.ClosePolicyViolation, "too slow")
	}
}

// drop removes c from the Hub and tells its writer to close the socket with
// code. Only the first drop of a client counts.
func (h *Hub) drop(c *client, code int, text string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(c, code, text)
}

func (h *Hub) dropLocked(c *client, code int, text string) {
	if c.gone {
		return
	}
	c.gone = true
	delete(h.clients, c)
	h.updateTopicsLocked()
	if c.topics&topicLogs != 0 && c.level < slog.LevelInfo {
		h.updateLevelLocked()
	}
	c.closeCode, c.closeText = code, text
	close(c.quit)
}

// writePump writes queued frames and pings until the client is dropped, then
// sends the close frame, waits (up to closeGrace) for the peer's answer and
// closes the connection.
func (c *client) writePump() {
	h := c.h
	defer func() {
		h.mu.Lock()
		delete(h.running, c)
		h.mu.Unlock()
		h.wg.Done()
	}()
	ping := time.NewTicker(h.pongWait * 9 / 10)
	defer ping.Stop()
	for {
		select {
		case <-c.quit:
			c.closeConn()
			return
		default:
		}
		select {
		case <-c.quit:
			c.closeConn()
			return
		case m := <-c.send:
			if err := c.write(m); err != nil {
				c.writeFailed(err)
			}
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(h.writeWait)); err != nil {
				c.writeFailed(err)
			}
		}
	}
}

func (c *client) write(m outgoing) error {
	if m.frame != nil {
		return c.writeFrame(m.frame)
	}
	for _, f := range m.batch {
		if err := c.writeFrame(f); err != nil {
			return err
		}
	}
	return nil
}

func (c *client) writeFrame(b []byte) error {
	c.conn.SetWriteDeadline(time.Now().Add(c.h.writeWait))
	return c.conn.WriteMessage(websocket.TextMessage, b)
}

func (c *client) writeFailed(err error) {
	if !expectedNetError(err) {
		c.h.log.Info("hub: write to client failed", "remote", c.conn.RemoteAddr().String(), "err", err)
	}
	c.h.drop(c, websocket.CloseAbnormalClosure, "")
}

// closeConn ends the socket: a close frame with closeCode (unless the socket
// failed, or gorilla already sent one), the peer's close frame or closeGrace,
// then the TCP connection.
func (c *client) closeConn() {
	if c.closeCode != websocket.CloseAbnormalClosure {
		msg := websocket.FormatCloseMessage(c.closeCode, c.closeText)
		err := c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
		if err == nil || errors.Is(err, websocket.ErrCloseSent) {
			t := time.NewTimer(closeGrace)
			select {
			case <-c.readDone:
			case <-t.C:
			}
			t.Stop()
		}
	}
	c.conn.Close()
}

// readPump reads client frames and answers them until the socket fails.
func (c *client) readPump() {
	h := c.h
	defer h.wg.Done()
	defer close(c.readDone)
	c.conn.SetReadLimit(h.maxMessage)
	c.conn.SetReadDeadline(time.Now().Add(h.pongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(h.pongWait))
	})
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			c.readFailed(err)
			return
		}
		c.conn.SetReadDeadline(time.Now().Add(h.pongWait))
		h.handle(c, data)
	}
}

func (c *client) readFailed(err error) {
	h := c.h
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has sent 1009. Drain what the peer still sends (the rest of
		// the oversized frame) until it closes, so that closing our side does
		// not reset the connection before the peer has read the close frame.
		h.drop(c, websocket.CloseMessageTooBig, "")
		c.conn.NetConn().SetReadDeadline(time.Now().Add(closeGrace))
		io.Copy(io.Discard, c.conn.NetConn())
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
		h.drop(c, websocket.CloseNormalClosure, "")
	default:
		if !expectedNetError(err) {
			h.log.Info("hub: read from client failed", "remote", c.conn.RemoteAddr().String(), "err", err)
		}
		h.drop(c, websocket.CloseAbnormalClosure, "")
	}
}

// expectedNetError reports errors that end sockets in normal operation: the
// peer went away, a deadline passed, or the socket is already closing.
func expectedNetError(err error) bool {
	var ne net.Error
	var ce *websocket.CloseError
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) ||
		errors.As(err, &ce) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// handle decodes one client frame and carries out its action. Actions run on
// the client's read goroutine, one at a time; answers are queued like any
// other frame.
func (h *Hub) handle(c *client, data []byte) {
	var req Request
	if err := json.Unmarshal(data, &req); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || te.Field == "" {
			h.reply(c, TypeError, Error{Code: CodeBadJSON, Message: badJSONMessage(err)}, nil)
			return
		}
		h.reply(c, TypeError, Error{Code: CodeBadRequest, Action: req.Action,
			Message: fmt.Sprintf("field %q: JSON %s is not a valid %s", te.Field, te.Value, te.Type)}, validRef(req.Ref))
		return
	}
	ref := validRef(req.Ref)
	if ref == nil && len(req.Ref) > 0 && string(req.Ref) != "null" {
		h.badRequest(c, &req, "ref must be a JSON string or number")
		return
	}
	switch req.Action {
	case ActionSubscribe:
		h.subscribe(c, &req, ref)
	case ActionCloseAll:
		closed := h.src.CloseConnections(func(proxywatch.ConnInfo) bool { return true })
		h.replyResult(c, req.Action, closed, ref)
	case ActionCloseConnection:
		if req.ID <= 0 {
			h.badRequest(c, &req, "id required (a connection id is a positive integer)")
			return
		}
		var closed []proxywatch.ConnInfo
		if ci, ok := h.src.CloseConnection(req.ID); ok {
			closed = append(closed, ci)
		}
		h.replyResult(c, req.Action, closed, ref)
	case ActionCloseConnections:
		h.closeConnections(c, &req, ref)
	case ActionGetHistory:
		limit := req.Limit
		switch {
		case limit < 0:
			h.badRequest(c, &req, "limit must not be negative")
			return
		case limit == 0 || limit > maxHistory:
			limit = maxHistory
		}
		hist := h.src.History()
		if len(hist) > limit {
			hist = hist[len(hist)-limit:]
		}
		frame := appendConnsFrame(make([]byte, 0, connsFrameSize(hist)), TypeHistory, hist, ref)
		h.mu.Lock()
		h.enqueueLocked(c, outgoing{frame: frame})
		h.mu.Unlock()
	case "":
		h.badRequest(c, &req, "missing action")
	default:
		action := req.Action
		if len(action) > 64 {
			action = action[:64]
		}
		h.reply(c, TypeError, Error{Code: CodeUnknownAction, Action: action,
			Message: fmt.Sprintf("unknown action %q", action)}, ref)
	}
}

func badJSONMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "a client message must be a JSON object"
	}
	return "malformed JSON: " + err.Error()
}

// validRef returns ref when it is a JSON string or number, nil otherwise.
func validRef(ref json.RawMessage) json.RawMessage {
	if len(ref) == 0 {
		return nil
	}
	switch ref[0] {
	case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return ref
	}
	return nil
}

func (h *Hub) badRequest(c *client, req *Request, msg string) {
	h.reply(c, TypeError, Error{Code: CodeBadRequest, Action: req.Action, Message: msg}, validRef(req.Ref))
}

func (h *Hub) reply(c *client, typ string, data any, ref json.RawMessage) {
	frame := h.mustEncode(typ, data, ref)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.enqueueLocked(c, outgoing{frame: frame})
}

func (h *Hub) replyResult(c *client, action string, closed []proxywatch.ConnInfo, ref json.RawMessage) {
	ids := make([]proxywatch.ConnID, len(closed))
	for i, ci := range closed {
		ids[i] = ci.ID
	}
	h.reply(c, TypeResult, Result{Action: action, Closed: len(ids), IDs: ids}, ref)
}

func (h *Hub) closeConnections(c *client, req *Request, ref json.RawMessage) {
	switch {
	case req.IDs != nil && req.Filter != nil:
		h.badRequest(c, req, "give either ids or filter, not both")
	case req.Filter != nil:
		if req.Filter.IsZero() {
			h.badRequest(c, req, "empty filter: give host, protocol or client, or use closeAllConnections")
			return
		}
		h.replyResult(c, req.Action, h.src.CloseConnections(req.Filter.Match), ref)
	case req.IDs != nil:
		want := make(map[proxywatch.ConnID]bool, len(req.IDs))
		for _, id := range req.IDs {
			want[id] = true
		}
		closed := h.src.CloseConnections(func(ci proxywatch.ConnInfo) bool { return want[ci.ID] })
		h.replyResult(c, req.Action, closed, ref)
	default:
		h.badRequest(c, req, "ids or filter required")
	}
}

// subscribe replaces c's subscription. The answer, the replay and the switch
// happen under h.mu, so every log record lands exactly once on the right
// side of the answer: before it at the old filter, after it at the new one.
// A subscription that adds connections gets the current list at once rather
// than at the next tick.
func (h *Hub) subscribe(c *client, req *Request, ref json.RawMessage) {
	level := slog.LevelInfo
	if req.LogLevel != "" {
		l, ok := proxywatch.ParseLevel(req.LogLevel)
		if !ok {
			h.badRequest(c, req, fmt.Sprintf("unknown logLevel %q; want DEBUG, INFO, WARN or ERROR", req.LogLevel))
			return
		}
		level = l
	}
	var set topicSet
	names := []string{}
	for _, t := range req.Topics {
		if bit, ok := topicBits[t]; ok && set&bit == 0 {
			set |= bit
			names = append(names, t)
		}
	}
	ack := h.mustEncode(TypeSubscribed, Subscribed{Topics: names, LogLevel: proxywatch.LevelName(level)}, ref)

	h.mu.Lock()
	if set&topicEventBatches != 0 && c.topics&topicEventBatches == 0 {
		// The batch being gathered holds events from before this subscribe:
		// it goes to the earlier subscribers only.
		h.flushEventsLocked()
	}
	batch := [][]byte{ack}
	if set&topicLogs != 0 && (c.topics&topicLogs == 0 || req.Since != nil) {
		batch = h.replayLocked(batch, level, req.Since)
	}
	addsConns := set&topicConnections != 0 && c.topics&topicConnections == 0
	addsDelta := set&topicConnectionsDelta != 0 && c.topics&topicConnectionsDelta == 0
	c.topics, c.level = set, level
	if addsDelta {
		c.deltaReady = false // no delta before its full list
	}
	h.updateTopicsLocked()
	h.updateLevelLocked()
	h.enqueueLocked(c, outgoing{batch: batch})
	h.mu.Unlock()

	if addsConns {
		frame := h.connectionsFrame(h.src.Connections())
		h.mu.Lock()
		if c.topics&topicConnections != 0 {
			h.enqueueLocked(c, outgoing{frame: frame})
		}
		h.mu.Unlock()
	}
	if addsDelta {
		h.startDelta(c)
	}
}
