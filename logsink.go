package proxywatch

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"
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

// LogObserver receives log records. See the package documentation
// (# Observers) for the delivery contract.
type LogObserver interface {
	ObserveLog(LogRecord)
}

// LogObserverFunc adapts a function to LogObserver.
type LogObserverFunc func(LogRecord)

// ObserveLog calls f(r). It implements LogObserver.
func (f LogObserverFunc) ObserveLog(r LogRecord) { f(r) }

// MultiLogObserver returns an observer that passes each record to every
// non-nil observer in obs, in order.
func MultiLogObserver(obs ...LogObserver) LogObserver {
	return LogObserverFunc(func(r LogRecord) {
		for _, o := range obs {
			if o != nil {
				o.ObserveLog(r)
			}
		}
	})
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

// ParseLevel parses a wire level name (case-insensitive: DEBUG, INFO, WARN,
// WARNING, ERROR) into a slog.Level.
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

// Bounds on what one LogRecord holds. Log lines carry text from the network
// (hosts, URLs, error messages quoting peer data), so every record is bounded
// no matter what a peer sends; the limits are far above what goproxy or
// net/http print for well-behaved traffic.
const (
	// maxMessageBytes bounds LogRecord.Message. A longer message is cut on a
	// UTF-8 boundary and ends with truncMark, the whole staying within the
	// bound.
	maxMessageBytes = 4096

	// maxAttrs bounds len(LogRecord.Attrs). When a record has more, the first
	// maxAttrs-1 are kept and the last one is droppedAttrsKey with the number
	// left out.
	maxAttrs = 16

	// maxAttrValueBytes bounds each string attr value (and each attr key),
	// cut like the message.
	maxAttrValueBytes = 1024

	// truncMark ends a string that was cut to fit its bound.
	truncMark = "…"

	// droppedAttrsKey names the attr that says how many attrs did not fit.
	droppedAttrsKey = "attrs_dropped"
)

// Sources of log records (LogRecord.Source).
const (
	sourceGoproxy = "goproxy"
	sourceHTTP    = "http"
	sourceApp     = "app"
)

// goproxyLine is what proxywatch knows about one goproxy log template.
type goproxyLine struct {
	level slog.Level // the level given to the line

	// errLevel, when raise is set, replaces level if the argument whose role
	// is "error" is not nil.
	errLevel slog.Level
	raise    bool

	roles []string // attr names of the arguments after the session, in order
}

// goproxyLines maps every log template goproxy v1.9.3 emits, keyed by the
// exact text after its "[%03d] " session prefix and without the final
// newline (that is, still carrying goproxy's own "INFO: " or "WARN: " tag),
// to the level proxywatch gives it and the roles of its arguments. goproxy
// has only two levels: INFO (printed only when Verbose is set) for everything
// from per-request chatter to real events, and WARN for every failure whoever
// caused it. proxywatch sets Verbose to see the events, so it spreads the
// lines over four levels instead. Templates not in the table (a handler's own
// ctx.Logf and ctx.Warnf lines, or a newer goproxy) keep goproxy's level.
//
// The one line goproxy builds at run time, "error read response <host> :
// <err>", cannot be a key; see readResponsePrefix.
var goproxyLines = map[string]goproxyLine{
	// DEBUG, per-request chatter: INFO lines goproxy prints several times for
	// every proxied request or CONNECT as it walks through its pipeline. They repeat what
	// the connection observers already report (method, URL, status, bytes),
	// and at INFO they would bury the lines that say something happened.
	"INFO: Got request %v %v %v %v":            {level: slog.LevelDebug, roles: []string{"path", "host", "method", "url"}},
	"INFO: Sending request %v %v":              {level: slog.LevelDebug, roles: []string{"method", "url"}},
	"INFO: Copying response to client %v [%d]": {level: slog.LevelDebug, roles: []string{"status_text", "status"}},
	"INFO: Running %d CONNECT handlers":        {level: slog.LevelDebug, roles: []string{"handlers"}},
	"INFO: on %dth handler: %v %s":             {level: slog.LevelDebug, roles: []string{"handler", "action", "host"}},
	"INFO: req %v":                             {level: slog.LevelDebug, roles: []string{"host"}},
	"INFO: resp %v":                            {level: slog.LevelDebug, roles: []string{"status_text"}},
	"INFO: signing for %s":                     {level: slog.LevelDebug, roles: []string{"host"}},
	"INFO: Exiting on EOF":                     {level: slog.LevelDebug},

	// DEBUG, or WARN when its error is not nil: the end of every plain
	// response's body copy. A nil error is the normal end of a request; a
	// non-nil one is almost always the client going away mid-body, which is
	// the client's doing, not a failure of the proxy or the upstream.
	"INFO: Copied %v bytes to client error=%v": {level: slog.LevelDebug, errLevel: slog.LevelWarn, raise: true, roles: []string{"bytes", "error"}},

	// INFO, once-per-connection events worth seeing at the default level:
	// how a CONNECT is handled and when a connection changes protocol.
	"INFO: Accepting CONNECT to %s":                      {level: slog.LevelInfo, roles: []string{"host"}},
	"INFO: Received CONNECT request, mitm proxying it":   {level: slog.LevelInfo},
	"INFO: ALPN negotiated h2, starting http2.ServeConn": {level: slog.LevelInfo},
	"INFO: Response looks like websocket upgrade.":       {level: slog.LevelInfo},

	// ERROR, the upstream failed: it could not be dialed, gave no response,
	// or broke off its body. The client's request failed, and not through
	// anything the client did.
	"WARN: Error dialing to %s: %s":                      {level: slog.LevelError, roles: []string{"host", "error"}},
	"WARN: Cannot read response from mitm'd server %v":   {level: slog.LevelError, roles: []string{"error"}},
	"WARN: HTTP/2 MITM: upstream RoundTrip failed: %v":   {level: slog.LevelError, roles: []string{"error"}},
	"WARN: HTTP/2 MITM: error reading response body: %v": {level: slog.LevelError, roles: []string{"error"}},
	"WARN: Cannot read response %s":                      {level: slog.LevelError, roles: []string{"error"}}, // a HandleBytes handler reading the upstream body

	// ERROR, the proxy itself could not do its job: sign a MITM certificate,
	// take over the client connection, or use an upgraded upstream one.
	"WARN: Cannot sign host certificate with provided CA: %s": {level: slog.LevelError, roles: []string{"error"}},
	"WARN: Unable to use Websocket connection":                {level: slog.LevelError},
	"WARN: Hijack error: %v":                                  {level: slog.LevelError, roles: []string{"error"}},
	"WARN: Cannot hijack connection: %v":                      {level: slog.LevelError, roles: []string{"error"}},

	// ERROR, the proxy is served in a way that cannot tunnel (HTTP/2, or a
	// middleware that hides http.Hijacker): every CONNECT fails until the
	// operator changes the setup.
	"WARN: ConnectProxyAuthHijack is not supported when the proxy is served over HTTP/2":    {level: slog.LevelError},
	"WARN: CONNECT: server does not support hijacking and request is not HTTP/2 (proto=%s)": {level: slog.LevelError, roles: []string{"proto"}},

	// WARN, the client side went wrong: it refused the MITM certificate, sent
	// something unparsable, or went away while the proxy wrote to it; or a
	// tunnel copy ended with an error (goproxy uses the same line for both
	// directions, and it is usually a peer resetting). Worth seeing, but the
	// proxy and the upstream did their part.
	"WARN: Cannot handshake client %v %v":                       {level: slog.LevelWarn, roles: []string{"host", "error"}},
	"WARN: Cannot read request from mitm'd client %v %v":        {level: slog.LevelWarn, roles: []string{"host", "error"}},
	"WARN: Cannot parse URL %s: %v":                             {level: slog.LevelWarn, roles: []string{"url", "error"}},
	"WARN: Illegal URL %s":                                      {level: slog.LevelWarn, roles: []string{"url"}},
	"WARN: Cannot write response header from mitm'd client: %v": {level: slog.LevelWarn, roles: []string{"error"}},
	"WARN: Cannot flush response header from mitm'd client: %v": {level: slog.LevelWarn, roles: []string{"error"}},
	"WARN: Cannot write response from mitm'd client: %v":        {level: slog.LevelWarn, roles: []string{"error"}},
	"WARN: Cannot write response that reject http CONNECT: %v":  {level: slog.LevelWarn, roles: []string{"error"}},
	"WARN: Error responding to client: %s":                      {level: slog.LevelWarn, roles: []string{"error"}},
	"WARN: Error closing client connection: %s":                 {level: slog.LevelWarn, roles: []string{"error"}},
	"WARN: Error copying to client: %s":                         {level: slog.LevelWarn, roles: []string{"error"}},
	"WARN: HTTP/2 MITM: error writing response body: %v":        {level: slog.LevelWarn, roles: []string{"error"}},
	"WARN: Can't close response body %v":                        {level: slog.LevelWarn, roles: []string{"error"}},
}

// readResponsePrefix starts the plain-mode line goproxy prints when the
// upstream round trip failed and no response handler supplied a response. It
// is built at run time ("error read response " + host + " : " + err) and used
// as the format itself, with no argument but the session, so it cannot be a
// table key and must not be formatted again (a "%" in the error would garble
// it). It is goproxy INFO, but it means the upstream failed: ERROR.
const (
	readResponsePrefix = "INFO: error read response "
	readResponseSep    = " : "
)

// goproxy's line shape: "[%03d] " + "INFO: " or "WARN: " + template + "\n",
// with the session (int64, masked to 16 bits) as the first argument.
const (
	sessionPrefix = "[%03d] "
	infoTag       = "INFO: "
	warnTag       = "WARN: "
)

// argNames names the arguments of templates proxywatch does not know.
var argNames = [maxAttrs]string{
	"arg1", "arg2", "arg3", "arg4", "arg5", "arg6", "arg7", "arg8",
	"arg9", "arg10", "arg11", "arg12", "arg13", "arg14", "arg15", "arg16",
}

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

// parsedLine is a goproxy Printf call taken apart, before any formatting.
type parsedLine struct {
	level    slog.Level
	session  int64
	format   string   // what to format args with: the template, or the whole format for unknown shapes
	args     []any    // the arguments of format
	roles    []string // attr names of args, for known templates
	known    bool     // format is a template of goproxyLines (so valid UTF-8)
	readResp bool     // the run-time built "error read response" line: format is the message itself
}

// parseGoproxy takes goproxy's Printf arguments apart without formatting or
// allocating anything. A call that does not have goproxy's shape (session
// prefix with an int64 first argument) is an INFO line without a session
// whose whole format is formatted with all of args.
func parseGoproxy(format string, args []any) parsedLine {
	p := parsedLine{level: slog.LevelInfo, format: format, args: args}
	if len(args) == 0 {
		return p
	}
	session, ok := args[0].(int64)
	if !ok || !strings.HasPrefix(format, sessionPrefix) {
		return p
	}
	p.session, p.args = session, args[1:]
	if t := cachedTemplate(format); t != nil {
		p.known, p.format = true, t.tmpl
		p.setLine(t.line)
		return p
	}
	key := strings.TrimSuffix(format[len(sessionPrefix):], "\n")
	switch {
	case strings.HasPrefix(key, infoTag):
		p.format = key[len(infoTag):]
	case strings.HasPrefix(key, warnTag):
		p.level, p.format = slog.LevelWarn, key[len(warnTag):]
	default:
		p.format = key
		return p
	}
	if l, ok := goproxyLines[key]; ok {
		p.known = true
		p.setLine(l)
		cacheTemplate(format, p.format, l)
	} else if len(p.args) == 0 && strings.HasPrefix(key, readResponsePrefix) {
		p.readResp, p.level = true, slog.LevelError
	}
	return p
}

// setLine gives p the level and roles of its template.
func (p *parsedLine) setLine(l goproxyLine) {
	p.level, p.roles = l.level, l.roles
	if l.raise {
		for i, role := range l.roles {
			if role == "error" && i < len(p.args) && p.args[i] != nil {
				p.level = l.errLevel
			}
		}
	}
}

// knownTemplate is a goproxy format found in goproxyLines, taken apart.
type knownTemplate struct {
	format string // the whole format goproxy passed
	tmpl   string // what to format the arguments after the session with
	line   goproxyLine
}

// templateCache remembers the known templates by the address of the format
// string: goproxy passes the same constant strings every time, so finding
// one costs a pointer comparison instead of taking the format apart and
// hashing it. A slot holds one template; two that share a slot take turns.
var templateCache [64]atomic.Pointer[knownTemplate]

func templateSlot(format string) *atomic.Pointer[knownTemplate] {
	h := uintptr(unsafe.Pointer(unsafe.StringData(format)))
	return &templateCache[(h>>4^h>>10)%uintptr(len(templateCache))]
}

// cachedTemplate returns the known template whose format is format, or nil.
// Formats are compared whole: a format built at run time that reuses an
// address never matches another's template.
func cachedTemplate(format string) *knownTemplate {
	if t := templateSlot(format).Load(); t != nil && t.format == format {
		return t
	}
	return nil
}

func cacheTemplate(format, tmpl string, l goproxyLine) {
	templateSlot(format).Store(&knownTemplate{format: format, tmpl: tmpl, line: l})
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

// sprintf returns fmt.Sprintf(format, args...), at a third of its cost for
// the formats goproxy logs with: verbs %v, %s and %d without flags, width or
// precision, and arguments that are strings, integers, booleans or nil. Any
// other format or argument goes to fmt.Sprintf, so the result is always
// exactly fmt's.
func sprintf(format string, args []any) string {
	s, _ := sprintfSimple(format, args)
	return s
}

// sprintfSimple is sprintf, and reports whether it formatted every argument
// itself (simple): the result is then the format's text and the arguments'
// strings and numbers, nothing that fmt made of another type.
func sprintfSimple(format string, args []any) (s string, simple bool) {
	var buf [256]byte
	b, ok := appendSimple(buf[:0], format, args)
	if !ok {
		return fmt.Sprintf(format, args...), false
	}
	return string(b), true
}

// appendSimple appends format formatted with args to b, as fmt would, when
// it can do so itself (see sprintf), and reports whether it could.
func appendSimple(b []byte, format string, args []any) ([]byte, bool) {
	next := 0
	for i := 0; i < len(format); i++ {
		if j := strings.IndexByte(format[i:], '%'); j != 0 {
			// The text up to the next verb, in one copy.
			if j < 0 {
				b = append(b, format[i:]...)
				break
			}
			b = append(b, format[i:i+j]...)
			i += j
		}
		if i++; i == len(format) {
			return nil, false
		}
		verb := format[i]
		if verb == '%' {
			b = append(b, '%')
			continue
		}
		if next == len(args) {
			return nil, false
		}
		var ok bool
		if b, ok = appendArg(b, verb, args[next]); !ok {
			return nil, false
		}
		next++
	}
	if next != len(args) {
		return nil, false // fmt reports the extra arguments
	}
	return b, true
}

// appendArg appends a formatted with verb as fmt would, or reports false
// when it is not one of the simple cases sprintf handles.
func appendArg(b []byte, verb byte, a any) ([]byte, bool) {
	switch v := a.(type) {
	case string:
		if verb == 'v' || verb == 's' {
			return append(b, v...), true
		}
	case int:
		if verb == 'v' || verb == 'd' {
			return strconv.AppendInt(b, int64(v), 10), true
		}
	case int64:
		if verb == 'v' || verb == 'd' {
			return strconv.AppendInt(b, v, 10), true
		}
	case uint64:
		if verb == 'v' || verb == 'd' {
			return strconv.AppendUint(b, v, 10), true
		}
	case bool:
		if verb == 'v' {
			return strconv.AppendBool(b, v), true
		}
	case nil:
		if verb == 'v' {
			return append(b, "<nil>"...), true
		}
	}
	return b, false
}

// argAttrs names args by role (argN past the known roles), skipping nil
// ones, within maxAttrs. valid reports that every string among args is
// valid UTF-8 (and so was kept whole, or cut only for its length).
func argAttrs(roles []string, args []any) (attrs []slog.Attr, valid bool) {
	n := nonNil(args)
	if n == 0 {
		return nil, true
	}
	return appendArgAttrs(make([]slog.Attr, 0, min(n, maxAttrs)), roles, args)
}

func nonNil(args []any) int {
	n := 0
	for _, a := range args {
		if a != nil {
			n++
		}
	}
	return n
}

// appendArgAttrs is argAttrs appending to dst, which is empty.
func appendArgAttrs(dst []slog.Attr, roles []string, args []any) (attrs []slog.Attr, valid bool) {
	valid = true
	b := attrBuilder{attrs: dst}
	for i, a := range args {
		if a == nil {
			continue
		}
		if len(b.attrs) == maxAttrs {
			b.dropped++
			if s, ok := a.(string); ok && !utf8.ValidString(s) {
				valid = false
			}
			continue
		}
		var key string
		switch {
		case i < len(roles):
			key = roles[i]
		case i < len(argNames):
			key = argNames[i]
		default: // only when nil arguments came first
			key = "arg" + strconv.Itoa(i+1)
		}
		var v slog.Value
		switch a := a.(type) {
		case string:
			// The common case, without slog.AnyValue's type switch.
			if len(a) <= maxAttrValueBytes && utf8.ValidString(a) {
				v = slog.StringValue(a)
			} else {
				valid = valid && utf8.ValidString(a)
				v = slog.StringValue(boundString(a, maxAttrValueBytes))
			}
		default:
			v = ownValue(slog.AnyValue(a))
		}
		b.attrs = append(b.attrs, slog.Attr{Key: key, Value: v})
	}
	return b.finish(), valid
}

// oneAllocation makes r's message and attrs from a line of a known template
// in one allocation, and reports whether it could: the line has three or four
// arguments other than nil (with fewer, two allocations take fewer bytes
// than one sized for four attrs), sprintf formats them itself, and the
// message is short. A record is made for an observer that keeps it, so
// nothing of it is ever reused: the message's bytes are written once, before
// they become a string.
func oneAllocation(r *LogRecord, p parsedLine) bool {
	n := nonNil(p.args)
	if n < 3 || n > 4 {
		return false
	}
	var buf [256]byte
	msg, ok := appendSimple(buf[:0], p.format, p.args)
	if !ok {
		return false
	}
	msg = bytes.TrimSpace(msg)
	var attrs []slog.Attr
	var text string
	switch m := len(msg); {
	case m <= 64:
		mem := new(struct {
			attrs [4]slog.Attr
			msg   [64]byte
		})
		attrs, text = mem.attrs[:0:n], unsafe.String(&mem.msg[0], copy(mem.msg[:], msg))
	case m <= 96:
		mem := new(struct {
			attrs [4]slog.Attr
			msg   [96]byte
		})
		attrs, text = mem.attrs[:0:n], unsafe.String(&mem.msg[0], copy(mem.msg[:], msg))
	case m <= 160:
		mem := new(struct {
			attrs [4]slog.Attr
			msg   [160]byte
		})
		attrs, text = mem.attrs[:0:n], unsafe.String(&mem.msg[0], copy(mem.msg[:], msg))
	default:
		return false
	}
	var valid bool
	r.Attrs, valid = appendArgAttrs(attrs, p.roles, p.args)
	r.Message = text
	if !valid {
		// A string argument that is not valid UTF-8 is in the message too.
		r.Message = boundString(text, maxMessageBytes)
	}
	return true
}

// ownValue returns v as a value that owns its data and is within bounds:
// strings are bounded and made valid UTF-8; numbers, booleans, times and
// durations are kept; anything else (errors, Stringers, pointers, structs) is
// formatted now, because a record outlives the call that made it and the
// proxy may change what a pointer points to.
func ownValue(v slog.Value) slog.Value {
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(boundString(v.String(), maxAttrValueBytes))
	case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
		return v
	}
	a := v.Any()
	if id, ok := a.(ConnID); ok {
		return slog.Int64Value(int64(id))
	}
	return slog.StringValue(boundString(fmt.Sprint(a), maxAttrValueBytes))
}

// boundString returns s as valid UTF-8 (invalid bytes become U+FFFD) of at
// most limit bytes; a string that had to be cut ends with truncMark. limit
// must exceed len(truncMark)+utf8.UTFMax. The common case, a short valid
// string, is returned as is without allocating.
func boundString(s string, limit int) string {
	over := len(s) > limit
	if !over && utf8.ValidString(s) {
		return s
	}
	if over {
		// Cut before the rune that straddles limit, so a valid rune is
		// never split into invalid bytes.
		s = s[:runeCut(s, limit)]
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, string(utf8.RuneError))
	}
	if over || len(s) > limit {
		if len(s) > limit-len(truncMark) {
			s = s[:runeCut(s, limit-len(truncMark))]
		}
		s += truncMark
	}
	return s
}

// boundLen is boundString for a string known to be valid UTF-8: only its
// length may need bounding.
func boundLen(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return boundString(s, limit)
}

// runeCut returns the largest index i <= n at which s can be cut without
// splitting a rune that starts within the last utf8.UTFMax bytes before n.
// n must be < len(s).
func runeCut(s string, n int) int {
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return n
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

// handler returns a slog.Handler whose records become LogRecords with Source
// "app". A top-level attr named "conn" holding an integer or a ConnID sets
// LogRecord.Conn, so the program's own lines can be joined to a connection.
func (s *logSink) handler() slog.Handler { return &sinkHandler{s: s} }

// sinkHandler is the slog.Handler of a logSink. Its attrs are kept already
// flattened ("group.key") and owned, within maxAttrs; WithAttrs and WithGroup
// return new handlers and never change an existing one.
type sinkHandler struct {
	s       *logSink
	attrs   []slog.Attr // from WithAttrs, flattened
	dropped int         // attrs from WithAttrs that did not fit
	prefix  string      // "g1.g2." from WithGroup
	conn    ConnID      // from a WithAttrs "conn" attr
}

// Enabled reports whether the sink accepts records at level l now.
func (h *sinkHandler) Enabled(_ context.Context, l slog.Level) bool { return h.s.enabled(l) }

// WithAttrs returns a handler that adds attrs to every record.
func (h *sinkHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	var b attrBuilder
	b.attrs = append(make([]slog.Attr, 0, min(len(h.attrs)+len(attrs), maxAttrs)), h.attrs...)
	b.dropped = h.dropped
	for _, a := range attrs {
		b.add(h.prefix, a)
	}
	h2.attrs, h2.dropped = b.attrs, b.dropped
	if b.conn != 0 {
		h2.conn = b.conn
	}
	return &h2
}

// WithGroup returns a handler that qualifies later attrs with name.
func (h *sinkHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	return &h2
}

// Handle turns r into a LogRecord. It never blocks and never fails.
func (h *sinkHandler) Handle(_ context.Context, r slog.Record) error {
	if !h.s.admit(r.Level) {
		return nil
	}
	b := attrBuilder{dropped: h.dropped, conn: h.conn}
	if n := len(h.attrs) + r.NumAttrs(); n > 0 {
		b.attrs = append(make([]slog.Attr, 0, min(n, maxAttrs)), h.attrs...)
	}
	r.Attrs(func(a slog.Attr) bool {
		b.add(h.prefix, a)
		return true
	})
	h.s.accept(LogRecord{
		Time:    r.Time,
		Level:   r.Level,
		Message: boundString(r.Message, maxMessageBytes),
		Source:  sourceApp,
		Conn:    b.conn,
		Attrs:   b.finish(),
	})
	return nil
}

// attrBuilder collects owned, flattened attrs: the first maxAttrs, then only
// a count of the rest; finish puts the count in the last place.
type attrBuilder struct {
	attrs   []slog.Attr
	dropped int // attrs past the first maxAttrs
	conn    ConnID
}

// add adds a, flattening groups with "." under prefix.
func (b *attrBuilder) add(prefix string, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return // the zero Attr is ignored, as slog's handlers must
	}
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range v.Group() {
			b.add(prefix, ga) // an empty group adds nothing, as in slog's handlers
		}
		return
	}
	if prefix == "" && a.Key == "conn" {
		if id, ok := connValue(v); ok {
			b.conn = id
		}
	}
	if len(b.attrs) >= maxAttrs {
		b.dropped++
		return
	}
	b.attrs = append(b.attrs, slog.Attr{Key: boundString(prefix+a.Key, maxAttrValueBytes), Value: ownValue(v)})
}

// finish returns the attrs. When some did not fit, the last kept one gives way
// to droppedAttrsKey with the number left out, so there are still maxAttrs.
func (b *attrBuilder) finish() []slog.Attr {
	if b.dropped == 0 {
		return b.attrs
	}
	b.attrs[maxAttrs-1] = slog.Int(droppedAttrsKey, b.dropped+1)
	return b.attrs
}

// connValue reads a "conn" attr: an integer or a ConnID.
func connValue(v slog.Value) (ConnID, bool) {
	switch v.Kind() {
	case slog.KindInt64:
		return ConnID(v.Int64()), true
	case slog.KindUint64:
		if u := v.Uint64(); u <= 1<<63-1 {
			return ConnID(u), true
		}
	case slog.KindAny:
		id, ok := v.Any().(ConnID)
		return id, ok
	}
	return 0, false
}

// Interface guards.
var _ slog.Handler = (*sinkHandler)(nil)
