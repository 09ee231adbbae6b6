package hub

import (
	"log/slog"

	"github.com/proxywatch/proxywatch"
)

// Level returns the lowest log level the Hub wants now: the lowest level of
// any client subscribed to logs, and never above INFO, so that the backlog
// holds recent INFO and higher records for a dashboard that connects later.
// It implements slog.Leveler; a Proxy asks it before making a log record, so
// DEBUG lines cost nothing while no client wants them.
func (h *Hub) Level() slog.Level { return h.keep.Level() }

// updateLevelLocked recomputes Level after a subscription changed.
func (h *Hub) updateLevelLocked() {
	lo := slog.LevelInfo
	for c := range h.clients {
		if c.topics&topicLogs != 0 && c.level < lo {
			lo = c.level
		}
	}
	h.keep.Set(lo)
}

// ObserveLog keeps r in the backlog and pushes it to the clients subscribed
// to logs at r's level or below. Records the Hub missed (r.Dropped, or a gap
// in r.Seq) are announced to every log subscriber with a logsDropped message
// first. It implements proxywatch.LogObserver; the Proxy calls it. A record
// without a Seq (0, or not above the last one) is numbered by the Hub.
func (h *Hub) ObserveLog(r proxywatch.LogRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if r.Seq <= h.lastSeq {
		r.Seq = h.lastSeq + 1 + r.Dropped
	}
	missed := r.Dropped // for the first record: earlier gaps predate the Hub
	if h.lastSeq != 0 {
		missed = r.Seq - h.lastSeq - 1
	}
	h.lastSeq = r.Seq
	h.lost += missed
	// A record below keep is wanted by no client (keep is the lowest level of
	// any), so it is neither encoded nor kept: nobody who subscribes later
	// would have had it made, as a Proxy asks Level before making a record;
	// only one made for another observer gets here.
	wanted := r.Level >= h.keep.Level()
	var frame []byte
	if wanted {
		frame = h.mustEncode(TypeLog, LogFromRecord(r), nil)
		if h.backlog > 0 {
			h.ring.add(logEntry{seq: r.Seq, level: r.Level, lost: h.lost, frame: frame})
			h.lost = 0
		}
	}

	var droppedOnly, both [][]byte
	if missed > 0 {
		d := h.mustEncode(TypeLogsDropped, LogsDropped{Count: missed}, nil)
		droppedOnly, both = [][]byte{d}, [][]byte{d, frame}
	}
	for c := range h.clients {
		if c.topics&topicLogs == 0 {
			continue
		}
		pass := wanted && r.Level >= c.level
		switch {
		case missed > 0 && pass:
			h.enqueueLocked(c, outgoing{batch: both})
		case missed > 0:
			h.enqueueLocked(c, outgoing{batch: droppedOnly})
		case pass:
			h.enqueueLocked(c, outgoing{frame: frame})
		}
	}
}

// replayLocked appends to batch the backlog records at level or above that a
// subscriber should get: all of them without since, those after since with
// it. Every gap after since of records the Hub never had, or kept and then
// evicted from the backlog, becomes a logsDropped message at its place;
// records not kept because no client wanted their level are not losses and
// are not announced. Where the gap reaches back past the oldest record still
// held, its count is an upper bound (the seqs in between may include records
// that were never kept). A since above the newest seq comes from an earlier
// server: it is treated as absent.
func (h *Hub) replayLocked(batch [][]byte, level slog.Level, since *uint64) [][]byte {
	var prev uint64
	havePrev := since != nil && *since <= h.lastSeq
	if havePrev {
		prev = *since
	}
	gap := func(n uint64) {
		if n > 0 {
			batch = append(batch, h.mustEncode(TypeLogsDropped, LogsDropped{Count: n}, nil))
		}
	}
	h.ring.each(func(e *logEntry) {
		if havePrev {
			if e.seq <= prev {
				return
			}
			if between := e.seq - prev - 1; prev < h.ring.evicted {
				gap(between) // evicted records among them
			} else {
				gap(min(between, e.lost))
			}
		}
		prev, havePrev = e.seq, true
		if e.level >= level {
			batch = append(batch, e.frame)
		}
	})
	if havePrev && h.lastSeq > prev {
		if h.backlog == 0 {
			gap(h.lastSeq - prev) // nothing is kept: every record is missed
		} else {
			gap(min(h.lastSeq-prev, h.lost))
		}
	}
	return batch
}

// logEntry is one backlog record, encoded once.
type logEntry struct {
	seq   uint64
	level slog.Level
	lost  uint64 // records the Hub never saw between the previous kept one and this
	frame []byte
}

// logRing keeps the latest len(entries) log records.
type logRing struct {
	entries []logEntry
	next    int    // where the next record goes
	n       int    // records held
	evicted uint64 // seq of the newest record evicted; 0 if none
}

func (r *logRing) add(e logEntry) {
	if r.n == len(r.entries) {
		r.evicted = r.entries[r.next].seq
	}
	r.entries[r.next] = e
	r.next = (r.next + 1) % len(r.entries)
	if r.n < len(r.entries) {
		r.n++
	}
}

// each calls f for every record held, oldest first.
func (r *logRing) each(f func(*logEntry)) {
	start := r.next - r.n
	if start < 0 {
		start += len(r.entries)
	}
	for i := 0; i < r.n; i++ {
		f(&r.entries[(start+i)%len(r.entries)])
	}
}
