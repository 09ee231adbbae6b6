package proxywatch

import (
	"bytes"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"
)

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

// argNames names the arguments of templates proxywatch does not know.
var argNames = [maxAttrs]string{
	"arg1", "arg2", "arg3", "arg4", "arg5", "arg6", "arg7", "arg8",
	"arg9", "arg10", "arg11", "arg12", "arg13", "arg14", "arg15", "arg16",
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
