package clash

import (
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/proxywatch/proxywatch"
)

// logLine and logStructured are the two formats of /logs lines.
type logLine struct {
	Type    string `json:"type"`
	Payload string `json:"payload"`
}

type logStructured struct {
	Time    string     `json:"time"`
	Level   string     `json:"level"`
	Message string     `json:"message"`
	Fields  []logField `json:"fields"`
}

type logField struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// logSub is one /logs client.
type logSub struct {
	level      slog.Level
	structured bool
	ch         chan []byte   // encoded lines
	dropped    atomic.Uint64 // lines this client missed since it was last told
}

// observeLog fans r out to every /logs client whose level it reaches, each
// format encoded once. A client whose queue is full misses the line, and
// learns how many it missed when it catches up.
func (c *API) observeLog(r proxywatch.LogRecord) {
	var plain, structured []byte
	c.mu.Lock()
	defer c.mu.Unlock()
	for sub := range c.logSubs {
		if r.Dropped > 0 {
			sub.dropped.Add(r.Dropped) // missed before reaching the API: of any level
		}
		if r.Level < sub.level {
			continue
		}
		var line []byte
		if sub.structured {
			if structured == nil {
				structured = encodeStructured(r)
			}
			line = structured
		} else {
			if plain == nil {
				plain = encodePlain(r)
			}
			line = plain
		}
		select {
		case sub.ch <- line:
		default:
			sub.dropped.Add(1)
		}
	}
}

// logFields lists r's attributes as strings, and the connection it
// belongs to as "conn" (the id /connections shows) when known.
func logFields(r proxywatch.LogRecord) []logField {
	fields := make([]logField, 0, len(r.Attrs)+1)
	hasConn := false
	for _, a := range r.Attrs {
		hasConn = hasConn || a.Key == "conn"
		fields = append(fields, logField{Key: a.Key, Value: a.Value.String()})
	}
	if r.Conn != 0 && !hasConn {
		fields = append(fields, logField{Key: "conn", Value: strconv.FormatInt(int64(r.Conn), 10)})
	}
	return fields
}

// encodePlain is the default format: the message followed by its
// fields as key=value, quoted where needed. The attributes of goproxy's lines
// are the arguments already formatted into the message: only "conn" is
// added to those.
func encodePlain(r proxywatch.LogRecord) []byte {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, f := range logFields(r) {
		if r.Source == sourceGoproxy && f.Key != "conn" {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(f.Key)
		b.WriteByte('=')
		if f.Value == "" || strings.ContainsAny(f.Value, " \t\n\"=") {
			b.WriteString(strconv.Quote(f.Value))
		} else {
			b.WriteString(f.Value)
		}
	}
	out, _ := json.Marshal(logLine{Type: levelName(r.Level), Payload: b.String()})
	return out
}

// sourceGoproxy is LogRecord.Source of goproxy's own lines.
const sourceGoproxy = "goproxy"

// encodeStructured is format=structured: the record's own time (Clash
// sends the time of sending), level "warn" for warnings as Clash does, and
// the fields Clash leaves empty.
func encodeStructured(r proxywatch.LogRecord) []byte {
	level := levelName(r.Level)
	if level == "warning" {
		level = "warn"
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	out, _ := json.Marshal(logStructured{
		Time:    t.Format(time.TimeOnly),
		Level:   level,
		Message: r.Message,
		Fields:  logFields(r),
	})
	return out
}

// droppedLine tells a client how many lines it missed.
func droppedLine(n uint64, structured bool) any {
	msg := "proxywatch: " + strconv.FormatUint(n, 10) + " log lines were dropped because this client did not keep up"
	if structured {
		return logStructured{Time: time.Now().Format(time.TimeOnly), Level: "warn", Message: msg,
			Fields: []logField{{Key: "dropped", Value: strconv.FormatUint(n, 10)}}}
	}
	return logLine{Type: "warning", Payload: msg}
}

// serveLogs streams the log lines at ?level= (debug, info, warning, error,
// silent; default info) and above, from now on, in the default format or in
// ?format=structured.
func (c *API) serveLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	level := slog.LevelInfo
	if v := q.Get("level"); v != "" && !parseLevelInto(v, &level) {
		writeError(w, http.StatusBadRequest, "Body invalid")
		return
	}
	sub := &logSub{level: level, structured: q.Get("format") == "structured", ch: make(chan []byte, c.logQueue)}
	// Subscribed before the upgrade completes: a client that saw the 101
	// gets every line logged after it.
	c.mu.Lock()
	c.logSubs[sub] = struct{}{}
	c.mu.Unlock()
	s := c.openStream(w, r)
	if s == nil {
		c.mu.Lock()
		delete(c.logSubs, sub)
		c.mu.Unlock()
		return
	}
	var err error
	for err == nil {
		select {
		case line := <-sub.ch:
			if n := sub.dropped.Swap(0); n > 0 {
				err = s.send(droppedLine(n, sub.structured))
			}
			if err == nil {
				err = s.sendRaw(line)
			}
		case <-s.gone:
			err = io.EOF
		case <-c.done:
			err = errClosed
		}
	}
	c.mu.Lock()
	delete(c.logSubs, sub)
	c.mu.Unlock()
	c.closeStream(s, err)
}

// levelSilent is the level of ?level=silent: above every record.
const levelSilent = slog.Level(math.MaxInt32)

// parseLevelInto parses a Clash level name (debug, info, warning,
// error, silent; "warn" as well).
func parseLevelInto(s string, l *slog.Level) bool {
	if strings.EqualFold(s, "silent") {
		*l = levelSilent
		return true
	}
	lv, ok := proxywatch.ParseLevel(s)
	if ok {
		*l = lv
	}
	return ok
}

// levelName is the Clash name of l: debug, info, warning or error.
func levelName(l slog.Level) string {
	switch proxywatch.LevelName(l) {
	case "ERROR":
		return "error"
	case "WARN":
		return "warning"
	case "INFO":
		return "info"
	}
	return "debug"
}
