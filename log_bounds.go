package proxywatch

import (
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"
)

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
