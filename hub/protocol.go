package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

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

// encodeFrame returns the JSON frame {"type":typ,"data":data,"ref":ref}
// without HTML escaping (the frames are not HTML) and without a newline.
func encodeFrame(typ string, data any, ref json.RawMessage) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(envelope{Type: typ, Data: data, Ref: ref}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// appendConnsFrame appends {"type":typ,"data":[...],"ref":ref} with one entry
// per connection; data is an empty array, never null, when there are none.
func appendConnsFrame(b []byte, typ string, conns []proxywatch.ConnInfo, ref json.RawMessage) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"data":[`...)
	for i := range conns {
		if i > 0 {
			b = append(b, ',')
		}
		c := ConnFromInfo(conns[i])
		b = appendConn(b, &c)
	}
	b = append(b, ']')
	if len(ref) > 0 {
		b = append(b, `,"ref":`...)
		b = append(b, ref...)
	}
	return append(b, '}')
}

// appendEventBatchFrame appends {"type":"eventBatch","data":[...]} with one
// event object per entry, as encoding/json encodes []Event, leaving out the
// entries whose Event is "" (opened events superseded by their closed ones).
func appendEventBatchFrame(b []byte, events []Event) []byte {
	b = append(b, `{"type":"eventBatch","data":[`...)
	first := true
	for i := range events {
		if events[i].Event == "" {
			continue // an opened event superseded by its closed one
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"event":`...)
		b = appendString(b, events[i].Event)
		b = append(b, `,"conn":`...)
		b = appendConn(b, &events[i].Conn)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendConn appends the JSON object of c, fields in declaration order.
func appendConn(b []byte, c *Conn) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, int64(c.ID), 10)
	b = append(b, `,"method":`...)
	b = appendString(b, c.Method)
	b = append(b, `,"host":`...)
	b = appendString(b, c.Host)
	b = append(b, `,"url":`...)
	b = appendString(b, c.URL)
	b = append(b, `,"remote":`...)
	b = appendString(b, c.Remote)
	b = append(b, `,"protocol":`...)
	b = appendString(b, string(c.Protocol))
	b = append(b, `,"up":`...)
	b = strconv.AppendUint(b, c.Up, 10)
	b = append(b, `,"down":`...)
	b = strconv.AppendUint(b, c.Down, 10)
	b = append(b, `,"start":`...)
	b = appendTime(b, c.Start)
	b = append(b, `,"upRate":`...)
	b = appendRate(b, c.UpRate)
	b = append(b, `,"downRate":`...)
	b = appendRate(b, c.DownRate)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(c.Status), 10)
	b = append(b, `,"parent":`...)
	b = strconv.AppendInt(b, int64(c.Parent), 10)
	if !c.End.IsZero() {
		b = append(b, `,"end":`...)
		b = appendTime(b, c.End)
	}
	if c.EndReason != "" {
		b = append(b, `,"endReason":`...)
		b = appendString(b, string(c.EndReason))
	}
	if c.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, c.Error)
	}
	return append(b, '}')
}

// appendTime appends t as encoding/json does: RFC 3339 with up to nine
// fraction digits (trailing zeros dropped). Years outside 0-9999 cannot be
// represented and are clamped, as no connection lives then.
func appendTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		t = time.Time{}
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendRate appends r rounded to a whole number of bytes per second; NaN,
// infinities and negative rates, which no counter produces, become 0.
func appendRate(b []byte, r float64) []byte {
	return strconv.AppendInt(b, wireRate(r), 10)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as encoding/json does
// without HTML escaping: quotes, backslashes and control characters are
// escaped, invalid UTF-8 becomes U+FFFD, and U+2028 and U+2029 are escaped
// for the JavaScript parsers that still choke on them.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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
