package proxywatch

import (
	"context"
	"log/slog"
)

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
