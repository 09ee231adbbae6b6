package hub

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/proxywatch/proxywatch"
)

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
