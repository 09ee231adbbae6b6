package hub

import (
	"math"
	"slices"
	"strconv"

	"github.com/proxywatch/proxywatch"
)

// connState is what a connectionsDelta subscriber was last told of the
// fields of one connection that a move changes, as encoded. It holds no
// pointer, so that the garbage collector never scans the 10,000-entry arrays
// of a busy proxy.
type connState struct {
	id               proxywatch.ConnID
	up, down         uint64
	upRate, downRate int64
	status           int
}

func stateOf(ci *proxywatch.ConnInfo) connState {
	return connState{
		id: ci.ID, up: ci.Up, down: ci.Down, upRate: wireRate(ci.UpRate), downRate: wireRate(ci.DownRate),
		status: ci.Status,
	}
}

// sameEntry reports whether only counters, rates and status may differ
// between two snapshots of one connection. It compares the other fields
// directly: a snapshot's strings share the proxy's bytes, so each
// comparison of an unchanged string is a length and a pointer, cheaper than
// hashing the entry every tick.
func sameEntry(a, b *proxywatch.ConnInfo) bool {
	return a.Parent == b.Parent && a.Start.Equal(b.Start) && a.Method == b.Method && a.Host == b.Host &&
		a.URL == b.URL && a.Client == b.Client && a.Protocol == b.Protocol
}

// sameCounters reports whether a connection's counters, rates and status
// read the same in two snapshots, which spares most idle entries encoding
// their rates again.
func sameCounters(a, b *proxywatch.ConnInfo) bool {
	return a.Up == b.Up && a.Down == b.Down && a.UpRate == b.UpRate && a.DownRate == b.DownRate && a.Status == b.Status
}

// deltaState is the list every connectionsDelta subscriber was last sent,
// sorted by id. Every delta is relative to it, encoded once for all of them;
// since a delta states new values, not differences, it is right too for a
// subscriber whose full list was taken after base (what it already has is
// stated again, and what it never had is removed again, harmlessly).
type deltaState struct {
	base  []connState
	prev  []proxywatch.ConnInfo // the snapshot base was taken from, index for index
	valid bool                  // base is what the subscribers were sent; false while there are none

	// Scratch space of appendDeltaFrame and of its caller, kept between
	// ticks.
	buf     []byte
	next    []connState
	added   []int32    // indexes in conns
	moved   [][2]int32 // indexes in base and in conns
	removed []int32    // indexes in base
}

// reset makes conns the base, as a new subscriber's full list.
func (d *deltaState) reset(conns []proxywatch.ConnInfo) {
	d.base = d.base[:0]
	for i := range conns {
		d.base = append(d.base, stateOf(&conns[i]))
	}
	d.prev = conns
	d.valid = true
}

// drop forgets the base once nobody holds it, and lets its snapshot and
// the frame buffer go.
func (d *deltaState) drop() {
	d.base, d.prev, d.buf, d.valid = d.base[:0], nil, nil, false
}

// appendDeltaFrame appends the connectionsDelta message that takes base to
// conns (sorted by id, as Proxy.Connections returns them), and makes conns
// the new base, keeping conns itself, which must not change afterwards. b
// is grown to the frame's size at most once.
func (d *deltaState) appendDeltaFrame(b []byte, conns []proxywatch.ConnInfo) []byte {
	if !d.valid {
		d.drop()
	}
	next := d.next[:0]
	added, moved, removed := d.added[:0], d.moved[:0], d.removed[:0]
	size := 64
	j := 0
	for i := range conns {
		ci := &conns[i]
		for j < len(d.base) && d.base[j].id < ci.ID {
			removed = append(removed, int32(j))
			j++
		}
		switch {
		case j == len(d.base) || d.base[j].id != ci.ID || !sameEntry(&d.prev[j], ci):
			next = append(next, stateOf(ci))
			added = append(added, int32(i))
			size += connEntryOverhead + len(ci.Method) + len(ci.Host) + len(ci.URL) + len(ci.Client) +
				len(ci.Protocol) + len(ci.EndReason) + len(ci.Err)
		case sameCounters(&d.prev[j], ci):
			next = append(next, d.base[j]) // as read last tick, so as encoded
		default:
			next = append(next, stateOf(ci))
			if old, st := &d.base[j], &next[i]; old.up != st.up || old.down != st.down || old.upRate != st.upRate ||
				old.downRate != st.downRate || old.status != st.status {
				moved = append(moved, [2]int32{int32(j), int32(i)})
				size += maxMoveSize
			}
		}
		if j < len(d.base) && d.base[j].id == ci.ID {
			j++
		}
	}
	for ; j < len(d.base); j++ {
		removed = append(removed, int32(j))
	}
	size += 21 * len(removed)
	b = slices.Grow(b, size)

	b = append(b, `{"type":"connectionsDelta","data":{"full":false,"conns":[`...)
	for n, i := range added {
		if n > 0 {
			b = append(b, ',')
		}
		c := ConnFromInfo(conns[i])
		b = appendConn(b, &c)
	}
	b = append(b, `],"moved":[`...)
	for n, m := range moved {
		if n > 0 {
			b = append(b, ',')
		}
		b = appendMove(b, &d.base[m[0]], &next[m[1]])
	}
	b = append(b, `],"removed":[`...)
	for n, j := range removed {
		if n > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(d.base[j].id), 10)
	}
	d.base, d.next, d.prev = next, d.base[:0], conns
	d.added, d.moved, d.removed = added, moved, removed
	d.valid = true
	return append(b, "]}}"...)
}

// maxMoveSize is the longest compact entry: an id and five numbers with
// their keys.
const maxMoveSize = 160

// appendMove appends the compact entry of a connection that moved: its id
// and the fields that changed, in ConnMove's order.
func appendMove(b []byte, old, st *connState) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, int64(st.id), 10)
	if old.up != st.up {
		b = append(b, `,"up":`...)
		b = strconv.AppendUint(b, st.up, 10)
	}
	if old.down != st.down {
		b = append(b, `,"down":`...)
		b = strconv.AppendUint(b, st.down, 10)
	}
	if old.upRate != st.upRate {
		b = append(b, `,"upRate":`...)
		b = strconv.AppendInt(b, st.upRate, 10)
	}
	if old.downRate != st.downRate {
		b = append(b, `,"downRate":`...)
		b = strconv.AppendInt(b, st.downRate, 10)
	}
	if old.status != st.status {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(st.status), 10)
	}
	return append(b, '}')
}

// appendFullDeltaFrame appends the connectionsDelta message that a new
// subscriber starts from: every live connection, full.
func appendFullDeltaFrame(b []byte, conns []proxywatch.ConnInfo) []byte {
	b = append(b, `{"type":"connectionsDelta","data":{"full":true,"conns":[`...)
	for i := range conns {
		if i > 0 {
			b = append(b, ',')
		}
		c := ConnFromInfo(conns[i])
		b = appendConn(b, &c)
	}
	return append(b, `],"moved":[],"removed":[]}}`...)
}

// wireRate is a rate as the protocol encodes it: rounded to whole bytes per
// second; NaN, infinities and negative rates, which no counter produces,
// become 0.
func wireRate(r float64) int64 {
	if math.IsNaN(r) || r <= 0 {
		return 0
	}
	if r >= 1<<63 {
		r = 1<<63 - 1024
	}
	return int64(math.Round(r))
}
