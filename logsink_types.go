package proxywatch

import (
	"log/slog"
	"strings"
	"time"
)

// LogRecord is one structured log record: a goproxy log line parsed from its
// format and arguments, or a record of the embedding program's slog logger.
type LogRecord struct {
	Seq     uint64 // 1, 2, 3... per Proxy, in the order records were accepted
	Time    time.Time
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
