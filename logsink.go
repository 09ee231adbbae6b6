package proxywatch

import (
	"bytes"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// LogRecord is one structured log record: a goproxy log line parsed from its
// format and arguments, a line of the proxy's http.Server error log, or a
// record of the embedding program's slog logger.
//
// A LogRecord is a value that owns its data: Message and every Attrs value are
// strings, numbers, booleans, times or durations copied when the record was
// made, never references to the proxy's live objects, so an observer may keep
// it and read it from any goroutine.
type LogRecord struct {
	Seq     uint64     // 1, 2, 3... per Proxy, in the order records were accepted
	Time    time.Time  // when it was made; for the program's slog records, their own time
	Level   slog.Level // goproxy lines are mapped onto Debug, Info, Warn and Error
	Message string     // formatted, without goproxy's "[nnn] LEVEL: " prefix; bounded in size
	Source  string     // "goproxy", "http" (the proxy's http.Server) or "app" (slog)

	// Session is the goproxy session number as goproxy printed it (masked to
	// 16 bits), 0 when the line had none. Conn is the connection the record
	// belongs to when it could be resolved (the live connection whose ID has
	// those low 16 bits), 0 otherwise.
	Session int64
	Conn    ConnID

	Attrs []slog.Attr // structured fields: goproxy's arguments by role, or the slog record's attrs

	// Dropped is the number of records this observer missed just before this
	// one because it did not keep up; Seq shows the gap as well.
	Dropped uint64
}

// LevelName returns the wire name of l: "DEBUG", "INFO", "WARN" or "ERROR",
// rounding levels in between down to the nearest of the four.
func LevelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARN"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

// ParseLevel parses a level name as the wire protocols spell it
// (case-insensitive: DEBUG, INFO, WARN, WARNING, ERROR) into a slog.Level.
// Unlike slog.Level.UnmarshalText it takes WARNING, mihomo's name, and
// refuses offsets such as INFO+2, which no client of the hub or the Clash API
// sends and LevelName could not say back.
func ParseLevel(s string) (slog.Level, bool) {
	switch strings.ToUpper(s) {
	case "DEBUG":
		return slog.LevelDebug, true
	case "INFO":
		return slog.LevelInfo, true
	case "WARN", "WARNING":
		return slog.LevelWarn, true
	case "ERROR":
		return slog.LevelError, true
	}
	return 0, false
}

// Sources of log records (LogRecord.Source).
const (
	sourceGoproxy = "goproxy"
	sourceHTTP    = "http"
	sourceApp     = "app"
)

// logSink turns goproxy's log lines, the proxy's http.Server error log and
// the embedding program's slog records into LogRecords for one Proxy. It
// holds no lock: every method may be called concurrently and returns as soon
// as emit does.
type logSink struct {
	level   slog.Leveler       // lowest accepted level; nil means Debug
	resolve func(int64) ConnID // session as printed -> live ConnID, or 0; may be nil
	emit    func(LogRecord)    // receives every accepted record; may be nil
	seq     atomic.Uint64      // records accepted so far, and the last Seq given
	errLog  *log.Logger        // see errorLog

	// Set by the Proxy, nil in a sink of its own. wants reports whether any
	// log observer wants records at a level; full reports whether every log
	// observer's queue is full, in which case it has counted the next record
	// as dropped for each of them.
	wants func(slog.Level) bool
	full  func() bool

	clock sinkClock // the records' Time
}

// sinkClock tells the time of records: a reading of time.Now advanced by the
// monotonic clock, which costs one clock read where time.Now costs two (a
// tenth of what making a typical record costs). It takes a new reading of
// the wall clock every clockResync, so a step of the system clock shows in
// the records' Time within that.
type sinkClock struct{ base atomic.Pointer[time.Time] }

const clockResync = time.Second

func (c *sinkClock) now() time.Time {
	if b := c.base.Load(); b != nil {
		if d := time.Since(*b); d >= 0 && d < clockResync {
			return b.Add(d)
		}
	}
	t := time.Now()
	c.base.Store(&t)
	return t
}

// newLogSink returns a sink. level gives the lowest level accepted (nil means
// slog.LevelDebug); it is read on every call, so a *slog.LevelVar changes the
// threshold at run time, and a record below it costs no allocation. resolve
// maps a goproxy session number as printed (masked to 16 bits) to the live
// ConnID, or 0; it is called only for accepted records with a session. emit
// receives every accepted record, already stamped with Seq (1, 2, 3... per
// sink) and Time; it is called synchronously on the logging goroutine, with
// no lock of the sink held, and must not block: the proxy's request
// goroutines wait for it.
func newLogSink(level slog.Leveler, resolve func(session int64) ConnID, emit func(LogRecord)) *logSink {
	s := &logSink{level: level, resolve: resolve, emit: emit}
	s.errLog = log.New(httpErrorWriter{s}, "", 0)
	return s
}

// accepted returns the number of records accepted so far.
func (s *logSink) accepted() uint64 { return s.seq.Load() }

// enabled reports whether records at level l are accepted now: l is at or
// above the sink's level and some log observer wants it.
func (s *logSink) enabled(l slog.Level) bool {
	lo := slog.LevelDebug
	if s.level != nil {
		lo = s.level.Level()
	}
	return l >= lo && (s.wants == nil || s.wants(l))
}

// admit reports whether to make a record at level l. It is enabled, except
// that a record every observer would drop for want of room is only counted
// (its Seq, and the drop for each observer): dropping allocates nothing.
func (s *logSink) admit(l slog.Level) bool {
	if !s.enabled(l) {
		return false
	}
	if s.full != nil && s.full() {
		s.seq.Add(1)
		return false
	}
	return true
}

// accept stamps r and hands it to emit.
func (s *logSink) accept(r LogRecord) {
	r.Seq = s.seq.Add(1)
	if r.Time.IsZero() {
		r.Time = s.clock.now()
	}
	if r.Session != 0 && r.Conn == 0 && s.resolve != nil {
		r.Conn = s.resolve(r.Session)
	}
	if s.emit != nil {
		s.emit(r)
	}
}

// Printf implements goproxy.Logger. It parses goproxy's format and arguments
// directly: the level comes from the template (see goproxyLines) and is
// checked before anything is formatted; the arguments become attrs named by
// their role. Lines of any other shape are accepted as INFO.
func (s *logSink) Printf(format string, args ...any) {
	p := parseGoproxy(format, args)
	if !s.admit(p.level) {
		return
	}
	r := LogRecord{Level: p.level, Source: sourceGoproxy, Session: p.session}
	switch {
	case p.readResp:
		// Not a format: print it as is. Its host and error are split off at
		// the first " : " (a host has no spaces).
		r.Message = boundString(strings.TrimSpace(p.format), maxMessageBytes)
		text := strings.TrimSpace(p.format[len(readResponsePrefix)-len(infoTag):])
		host, errText, found := strings.Cut(text, readResponseSep)
		r.Attrs = make([]slog.Attr, 0, 2)
		r.Attrs = append(r.Attrs, slog.String("host", boundString(host, maxAttrValueBytes)))
		if found {
			r.Attrs = append(r.Attrs, slog.String("error", boundString(errText, maxAttrValueBytes)))
		}
	case len(p.args) == 0 && strings.IndexByte(p.format, '%') < 0:
		r.Message = boundString(strings.TrimSpace(p.format), maxMessageBytes)
	case p.known && oneAllocation(&r, p):
		// The common case: message and attrs made in one allocation.
	default:
		var argsValid bool
		r.Attrs, argsValid = argAttrs(p.roles, p.args)
		msg, simple := sprintfSimple(p.format, p.args)
		msg = strings.TrimSpace(msg)
		if simple && argsValid && p.known {
			// A template of goproxyLines (valid UTF-8) with strings known
			// to be valid, integers and booleans: only the length is left
			// to bound.
			r.Message = boundLen(msg, maxMessageBytes)
		} else {
			r.Message = boundString(msg, maxMessageBytes)
		}
	}
	s.accept(r)
}

// errorLog returns a *log.Logger for http.Server.ErrorLog: each line it is
// given (TLS handshake failures, accept errors, handler panics) becomes a WARN
// record with Source "http". Every call returns the same logger.
func (s *logSink) errorLog() *log.Logger { return s.errLog }

// httpErrorWriter receives the formatted lines of errorLog. log.Logger calls
// it with one whole line per Write, holding the logger's own mutex (which
// serializes its writes; emit does not block, so this costs nothing).
type httpErrorWriter struct{ s *logSink }

// tlsHandshakePrefix starts net/http's "http: TLS handshake error from
// <addr>: <err>" line; its client address and error become attrs.
const tlsHandshakePrefix = "http: TLS handshake error from "

// Write implements io.Writer. It never fails.
func (w httpErrorWriter) Write(p []byte) (int, error) {
	n := len(p)
	if !w.s.admit(slog.LevelWarn) {
		return n, nil
	}
	// Only what can survive the bound is copied; boundString still sees the
	// line as too long and marks the cut.
	if len(p) > maxMessageBytes+utf8.UTFMax {
		p = p[:maxMessageBytes+utf8.UTFMax]
	}
	msg := boundString(string(bytes.TrimSpace(p)), maxMessageBytes)
	r := LogRecord{Level: slog.LevelWarn, Source: sourceHTTP, Message: msg}
	if rest, ok := strings.CutPrefix(msg, tlsHandshakePrefix); ok {
		// The address (host:port or [v6]:port) has no ": " in it.
		if addr, errText, ok := strings.Cut(rest, ": "); ok {
			r.Attrs = []slog.Attr{
				slog.String("client", boundString(addr, maxAttrValueBytes)),
				slog.String("error", boundString(errText, maxAttrValueBytes)),
			}
		}
	}
	w.s.accept(r)
	return n, nil
}

// noteSession remembers the highest goproxy session seen, to place the 16-bit
// session numbers of log lines.
func (p *Proxy) noteSession(id ConnID) {
	for {
		cur := p.maxSession.Load()
		if int64(id) <= cur || p.maxSession.CompareAndSwap(cur, int64(id)) {
			return
		}
	}
}

// resolveSession maps a session number as goproxy prints it (the low 16 bits)
// to a connection: the newest live one with those low bits if there is one
// (among the last sessionPeriods×65536 sessions), else the
// session nearest the newest one seen (log lines come just before or after
// the hook that sees the session).
func (p *Proxy) resolveSession(s int64) ConnID {
	if s <= 0 || s > 0xFFFF {
		return 0
	}
	if id, ok := p.reg.liveSession(s, p.maxSession.Load()); ok {
		return id
	}
	next := p.maxSession.Load() + 1
	c := next&^0xFFFF | s
	for _, alt := range []int64{c - 0x10000, c + 0x10000} {
		if alt > 0 && abs(alt-next) < abs(c-next) {
			c = alt
		}
	}
	if c <= 0 {
		return 0
	}
	return ConnID(c)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
