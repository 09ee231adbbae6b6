package hub

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/proxywatch/proxywatch"
)

// ProtocolVersion is the wire protocol version announced in hello. It changes
// only when a change is not additive; new fields, message types, topics and
// actions keep the version (PROTOCOL.md, "Versioning").
const ProtocolVersion = 1

// Message types sent by the server, the "type" of every server frame.
const (
	TypeHello       = "hello"
	TypeSubscribed  = "subscribed"
	TypeTraffic     = "traffic"
	TypeConnections = "connections"
	TypeEvent       = "event"
	TypeEventBatch  = "eventBatch"

	TypeConnectionsDelta = "connectionsDelta"
	TypeLog              = "log"
	TypeLogsDropped      = "logsDropped"
	TypeHistory          = "history"
	TypeResult           = "result"
	TypeError            = "error"
)

// Topics a client can subscribe to.
const (
	TopicTraffic     = "traffic"
	TopicConnections = "connections"
	TopicLogs        = "logs"
	TopicEvents      = "events"

	// TopicEventBatches carries the events of topic events batched: one
	// eventBatch message per Options.EventInterval with every event since
	// the previous one, in order. A busy proxy opens and closes thousands of
	// connections a second; one frame per event to every dashboard cost more
	// than the proxying itself.
	TopicEventBatches = "eventBatches"

	// TopicConnectionsDelta carries the live set as changes: a full list on
	// subscribe, then every ConnectionsInterval only the connections that
	// are new, the counters and rates that moved, and the ids that left.
	// With thousands of mostly idle connections a full list every tick is
	// megabytes to encode, send and decode for nothing.
	TopicConnectionsDelta = "connectionsDelta"
)

// Actions a client can send, the "action" of every client frame.
const (
	ActionSubscribe        = "subscribe"
	ActionCloseAll         = "closeAllConnections"
	ActionCloseConnection  = "closeConnection"
	ActionCloseConnections = "closeConnections"
	ActionGetHistory       = "getHistory"
)

// maxHistory is getHistory's default and largest limit.
const maxHistory = 1000

// Error codes carried by an error message.
const (
	CodeBadJSON       = "bad_json"       // the frame is not a JSON object
	CodeUnknownAction = "unknown_action" // the action is not one this server knows
	CodeBadRequest    = "bad_request"    // a known action with missing or invalid fields
)

var (
	allTopics  = []string{TopicTraffic, TopicConnections, TopicLogs, TopicEvents, TopicEventBatches, TopicConnectionsDelta}
	allActions = []string{ActionSubscribe, ActionCloseAll, ActionCloseConnection, ActionCloseConnections, ActionGetHistory}
)

// Message is the envelope of every server frame: {"type":...,"data":...} plus
// "ref" on answers to actions that carried one. Go clients decode frames into
// a Message and then Data into the struct its Type names.
type Message struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	Ref  json.RawMessage `json:"ref,omitempty"`
}

// Request is a client frame: one action and its fields. Fields an action does
// not use are ignored, and so are unknown fields.
type Request struct {
	Action string `json:"action"`

	// Ref, when given, must be a JSON string or number; it is echoed in the
	// answer (subscribed, result, history or error) so that a client can match
	// answers to requests.
	Ref json.RawMessage `json:"ref,omitempty"`

	// Topics and LogLevel are for subscribe. Topics replaces the whole
	// subscription; absent means none. LogLevel absent means INFO.
	Topics   []string `json:"topics,omitempty"`
	LogLevel string   `json:"logLevel,omitempty"`

	// Since is for subscribe: the last log seq the client has. The server
	// replays the backlog records after it (PROTOCOL.md, "Log backlog").
	Since *uint64 `json:"since,omitempty"`

	// ID is for closeConnection; IDs or Filter for closeConnections.
	ID     proxywatch.ConnID   `json:"id,omitempty"`
	IDs    []proxywatch.ConnID `json:"ids,omitempty"`
	Filter *Filter             `json:"filter,omitempty"`

	// Limit is for getHistory: how many of the most recently closed
	// connections to return; 0 means (and more than 1000 is cut to) 1000.
	Limit int `json:"limit,omitempty"`
}

// Filter selects connections for closeConnections. Every non-empty field
// must match: Host and Client are case-insensitive substrings of the
// connection's host and client address, Protocol equals its protocol exactly.
// The zero Filter is refused (use closeAllConnections).
type Filter struct {
	Host     string `json:"host,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Client   string `json:"client,omitempty"`
}

// IsZero reports whether f has no field set.
func (f Filter) IsZero() bool { return f == Filter{} }

// Match reports whether c matches every non-empty field of f. The zero Filter
// matches every connection.
func (f Filter) Match(c proxywatch.ConnInfo) bool {
	if f.Protocol != "" && string(c.Protocol) != f.Protocol {
		return false
	}
	return containsFold(c.Host, f.Host) && containsFold(c.Client, f.Client)
}

// containsFold reports whether sub is within s, ignoring ASCII case (hosts and
// addresses are ASCII; Unicode folding would let odd forms match).
func containsFold(s, sub string) bool {
	n := len(sub)
	if n == 0 {
		return true
	}
	for i := 0; i+n <= len(s); i++ {
		if equalFoldASCII(s[i:i+n], sub) {
			return true
		}
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Hello is the data of the first frame on every socket.
type Hello struct {
	Protocol  int       `json:"protocol"` // ProtocolVersion
	Server    string    `json:"server"`   // "proxywatch v0.1.0", "proxywatch (devel)"
	Intervals Intervals `json:"intervals"`
	Topics    []string  `json:"topics"`  // topics this server offers
	Actions   []string  `json:"actions"` // actions this server understands

	// LogSeq is the seq of the newest log record the server has (0: none),
	// LogBacklog how many records it keeps for replay.
	LogSeq     uint64 `json:"logSeq"`
	LogBacklog int    `json:"logBacklog"`

	MaxMessageBytes int64 `json:"maxMessageBytes"` // largest client frame accepted
}

// Intervals are the push periods in milliseconds.
type Intervals struct {
	Traffic     int64 `json:"traffic"`
	Connections int64 `json:"connections"`
	Events      int64 `json:"events"` // of eventBatch messages
}

// Subscribed answers subscribe with the subscription now in effect: the known
// topics among those asked for (unknown ones are ignored) and the log level.
type Subscribed struct {
	Topics   []string `json:"topics"`
	LogLevel string   `json:"logLevel"`
}

// Traffic is the data of a traffic message. Up and Down are the bytes moved
// during the last Interval milliseconds (measured, not nominal).
type Traffic struct {
	Up        uint64 `json:"up"`
	Down      uint64 `json:"down"`
	UpTotal   uint64 `json:"upTotal"`
	DownTotal uint64 `json:"downTotal"`
	Live      int    `json:"live"`     // connections in the live set
	Interval  int64  `json:"interval"` // milliseconds
}

// Conn is one connection entry on the wire: in connections, history and
// event messages. The first eight fields are the seed protocol's. End,
// EndReason and Error are omitted while the connection is live.
type Conn struct {
	ID       proxywatch.ConnID   `json:"id"`
	Method   string              `json:"method"`
	Host     string              `json:"host"`
	URL      string              `json:"url"`
	Remote   string              `json:"remote"` // the client's address
	Protocol proxywatch.Protocol `json:"protocol"`
	Up       uint64              `json:"up"`
	Down     uint64              `json:"down"`

	Start     time.Time            `json:"start"`
	UpRate    float64              `json:"upRate"`   // bytes/s, encoded rounded to an integer
	DownRate  float64              `json:"downRate"` // bytes/s, encoded rounded to an integer
	Status    int                  `json:"status"`   // HTTP status; 0 if none (yet)
	Parent    proxywatch.ConnID    `json:"parent"`   // MITM tunnel id; 0 if none
	End       time.Time            `json:"end,omitzero"`
	EndReason proxywatch.EndReason `json:"endReason,omitempty"`
	Error     string               `json:"error,omitempty"`
}

// ConnFromInfo converts a proxywatch connection snapshot to its wire entry,
// with times in UTC.
func ConnFromInfo(ci proxywatch.ConnInfo) Conn {
	c := Conn{
		ID:        ci.ID,
		Method:    ci.Method,
		Host:      ci.Host,
		URL:       ci.URL,
		Remote:    ci.Client,
		Protocol:  ci.Protocol,
		Up:        ci.Up,
		Down:      ci.Down,
		Start:     ci.Start.UTC(),
		UpRate:    ci.UpRate,
		DownRate:  ci.DownRate,
		Status:    ci.Status,
		Parent:    ci.Parent,
		EndReason: ci.EndReason,
		Error:     ci.Err,
	}
	if !ci.End.IsZero() {
		c.End = ci.End.UTC()
	}
	return c
}

// MarshalJSON encodes c as the protocol says, without reflection: the
// connections message of a proxy with thousands of live connections is built
// from it every push.
func (c Conn) MarshalJSON() ([]byte, error) {
	return appendConn(make([]byte, 0, 256), &c), nil
}

// ConnectionsDelta is the data of a connectionsDelta message. With Full, Conns
// is the whole live set and replaces what the client had; otherwise Conns are
// connections the client has not been sent (or whose entry changed beyond
// its counters), Moved the compact entries of those whose counters, rates or
// status changed, and Removed the ids that left the live set. The arrays are
// never null.
type ConnectionsDelta struct {
	Full    bool                `json:"full"`
	Conns   []Conn              `json:"conns"`
	Moved   []ConnMove          `json:"moved"`
	Removed []proxywatch.ConnID `json:"removed"`
}

// ConnMove is the compact entry of a connection that moved: its id and the
// fields that changed, each absent when it did not. Rates are encoded
// rounded, as in Conn.
type ConnMove struct {
	ID       proxywatch.ConnID `json:"id"`
	Up       *uint64           `json:"up,omitempty"`
	Down     *uint64           `json:"down,omitempty"`
	UpRate   *int64            `json:"upRate,omitempty"`
	DownRate *int64            `json:"downRate,omitempty"`
	Status   *int              `json:"status,omitempty"`
}

// Event is the data of an event message: a connection entered ("opened") or
// left ("closed") the live set. A closed event carries the final bytes, End,
// EndReason and Error.
type Event struct {
	Event string `json:"event"`
	Conn  Conn   `json:"conn"`
}

// EventFromConn converts a proxywatch lifecycle event to its wire form. ok is
// false for a state the protocol does not know (such events are not sent).
func EventFromConn(e proxywatch.ConnEvent) (ev Event, ok bool) {
	switch e.State {
	case proxywatch.ConnOpened:
		ev.Event = "opened"
	case proxywatch.ConnClosed:
		ev.Event = "closed"
	default:
		return Event{}, false
	}
	ev.Conn = ConnFromInfo(e.Conn)
	return ev, true
}

// Log is the data of a log message. The first four fields are the seed
// protocol's.
type Log struct {
	Level   string    `json:"level"` // DEBUG, INFO, WARN or ERROR
	Session int64     `json:"session"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`

	Seq    uint64            `json:"seq"`    // 1, 2, 3... per server
	Conn   proxywatch.ConnID `json:"conn"`   // the connection, 0 if unknown
	Source string            `json:"source"` // "goproxy", "http" or "app"

	// Attrs are the record's structured fields; values are JSON strings,
	// numbers, booleans or objects (groups). Omitted when there are none.
	Attrs map[string]any `json:"attrs,omitempty"`
}

// LogFromRecord converts a proxywatch log record to its wire form, with its
// time in UTC and its level rounded down to one of the four names.
func LogFromRecord(r proxywatch.LogRecord) Log {
	return Log{
		Level:   proxywatch.LevelName(r.Level),
		Session: r.Session,
		Message: r.Message,
		Time:    r.Time.UTC(),
		Seq:     r.Seq,
		Conn:    r.Conn,
		Source:  r.Source,
		Attrs:   attrsMap(r.Attrs),
	}
}

// LogsDropped is the data of a logsDropped message: this client missed Count
// log records at this point of the stream.
type LogsDropped struct {
	Count uint64 `json:"count"`
}

// Result answers the close actions: what was closed.
type Result struct {
	Action string              `json:"action"`
	Closed int                 `json:"closed"`
	IDs    []proxywatch.ConnID `json:"ids"` // never null
}

// Error answers a client frame the server could not act on. The socket stays
// open.
type Error struct {
	Code    string `json:"code"` // CodeBadJSON, CodeUnknownAction or CodeBadRequest
	Message string `json:"message"`
	Action  string `json:"action,omitempty"`
}

// envelope is Message for encoding: Data is encoded in the same pass.
type envelope struct {
	Type string          `json:"type"`
	Data any             `json:"data"`
	Ref  json.RawMessage `json:"ref,omitempty"`
}

// attrsMap converts slog attributes into JSON-safe values: groups become
// objects, durations strings like "1.5s", times RFC 3339 strings, errors their
// text, other values their fmt form. Nil when there are none.
func attrsMap(attrs []slog.Attr) map[string]any {
	if len(attrs) == 0 {
		return nil
	}
	m := make(map[string]any, len(attrs))
	for _, a := range attrs {
		addAttr(m, a)
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func addAttr(m map[string]any, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := v.Group()
		if len(g) == 0 {
			return
		}
		if a.Key == "" { // an empty key inlines the group, as slog handlers do
			for _, ga := range g {
				addAttr(m, ga)
			}
			return
		}
		sub := make(map[string]any, len(g))
		for _, ga := range g {
			addAttr(sub, ga)
		}
		m[a.Key] = sub
		return
	}
	if a.Key == "" {
		return
	}
	m[a.Key] = attrValue(v)
}

func attrValue(v slog.Value) any {
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindFloat64:
		if f := v.Float64(); !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f
		}
		return v.String()
	case slog.KindBool:
		return v.Bool()
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindTime:
		return v.Time().UTC().Format(time.RFC3339Nano)
	}
	if err, ok := v.Any().(error); ok {
		return err.Error()
	}
	return fmt.Sprint(v.Any())
}
