package hub

import (
	"bytes"
	"cmp"
	"slices"
	"time"

	"github.com/proxywatch/proxywatch"
)

// tick is the one goroutine that pushes connections and event batches.
func (h *Hub) tick() {
	defer h.wg.Done()
	conns := time.NewTicker(h.connsEvery)
	defer conns.Stop()
	events := time.NewTicker(h.eventsEvery)
	defer events.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-conns.C:
			h.pushConnections()
		case <-events.C:
			h.mu.Lock()
			h.flushEventsLocked()
			h.mu.Unlock()
		}
	}
}

// maxBatchEvents bounds an event batch: a batch this long is sent at once.
const maxBatchEvents = 4096

// flushEventsLocked sends the events gathered since the last batch, encoded
// once, to the eventBatches subscribers.
func (h *Hub) flushEventsLocked() {
	if len(h.events) == 0 {
		return
	}
	frame := appendEventBatchFrame(make([]byte, 0, eventBatchSize(h.events)), h.events)
	clear(h.events) // let the strings go
	h.events = h.events[:0]
	clear(h.opened)
	for c := range h.clients {
		if c.topics&topicEventBatches != 0 {
			h.enqueueLocked(c, outgoing{frame: frame})
		}
	}
}

// eventBatchSize estimates an eventBatch frame's size on the high side.
func eventBatchSize(events []Event) int {
	n := 64
	for i := range events {
		c := &events[i].Conn
		n += 32 + connEntryOverhead + len(c.Method) + len(c.Host) + len(c.URL) + len(c.Remote) +
			len(c.Protocol) + len(c.EndReason) + len(c.Error)
	}
	return n
}

// ObserveTraffic turns the Proxy's traffic samples into traffic messages:
// one per TrafficInterval, rounded to whole samples (a message goes out once
// the samples since the previous one cover the interval within half a
// sample, so none comes faster than the sampler). Up and down are the
// differences of the samples' running totals, so a sample an overloaded
// observer queue dropped is still counted in the next message. The totals are
// followed even with nobody subscribed, so that the first message after a
// subscribe covers one interval, not the hub's life. It implements
// proxywatch.TrafficObserver; the Proxy calls it.
func (h *Hub) ObserveTraffic(s proxywatch.TrafficSample) {
	elapsed := s.Time.Sub(h.lastTraffic)
	if elapsed+s.Interval/2 < h.trafficEvery {
		return
	}
	t := Traffic{
		Up:        delta(s.UpTotal, h.lastUp),
		Down:      delta(s.DownTotal, h.lastDown),
		UpTotal:   s.UpTotal,
		DownTotal: s.DownTotal,
		Live:      s.Live,
		Interval:  elapsed.Milliseconds(),
	}
	h.lastUp, h.lastDown, h.lastTraffic = s.UpTotal, s.DownTotal, s.Time
	if !h.subscribed(topicTraffic) {
		return
	}
	h.broadcast(topicTraffic, h.mustEncode(TypeTraffic, t, nil))
}

func delta(now, before uint64) uint64 {
	if now < before {
		return 0
	}
	return now - before
}

// pushConnections sends the live set, encoded once for every subscriber of
// connections, and its delta, encoded once for every subscriber of
// connectionsDelta. The snapshot is not even taken when nobody is
// subscribed.
func (h *Hub) pushConnections() {
	full, delta := h.subscribed(topicConnections), h.subscribed(topicConnectionsDelta)
	h.deltaMu.Lock()
	defer h.deltaMu.Unlock()
	if !delta {
		h.delta.drop() // nobody holds the base any more
	}
	if !full && !delta {
		return
	}
	conns := sortedByID(h.src.Connections())
	if full {
		h.broadcast(topicConnections, h.connectionsFrame(conns))
	}
	if !delta {
		return
	}
	// The delta is encoded into the buffer kept for it and copied out at
	// its real size: the frame goes to the client queues, which may hold it
	// after the next tick, while the buffer, grown for the worst case, is
	// allocated once.
	h.delta.buf = h.delta.appendDeltaFrame(h.delta.buf[:0], conns)
	frame := bytes.Clone(h.delta.buf)
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if c.topics&topicConnectionsDelta != 0 && c.deltaReady {
			h.enqueueLocked(c, outgoing{frame: frame})
		}
	}
}

// startDelta queues the full list that a new connectionsDelta subscriber
// starts from. deltaMu orders it with the pushes: every delta c gets after
// it comes from a later snapshot.
func (h *Hub) startDelta(c *client) {
	h.deltaMu.Lock()
	defer h.deltaMu.Unlock()
	conns := sortedByID(h.src.Connections())
	frame := appendFullDeltaFrame(make([]byte, 0, connsFrameSize(conns)), conns)
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.gone || c.topics&topicConnectionsDelta == 0 {
		return
	}
	if !h.delta.valid {
		h.delta.reset(conns)
	}
	c.deltaReady = true
	h.enqueueLocked(c, outgoing{frame: frame})
}

// sortedByID sorts conns by id unless they are already, as a Proxy's are.
// The check reads the ids in place: a comparison function would copy two
// whole entries for each of 10,000 pairs every tick.
func sortedByID(conns []proxywatch.ConnInfo) []proxywatch.ConnInfo {
	for i := 1; i < len(conns); i++ {
		if conns[i].ID < conns[i-1].ID {
			slices.SortFunc(conns, cmpID)
			break
		}
	}
	return conns
}

func cmpID(a, b proxywatch.ConnInfo) int { return cmp.Compare(a.ID, b.ID) }

// connectionsFrame encodes a connections message.
func (h *Hub) connectionsFrame(conns []proxywatch.ConnInfo) []byte {
	return appendConnsFrame(make([]byte, 0, connsFrameSize(conns)), TypeConnections, conns, nil)
}

// connsFrameSize estimates the encoded size of a message listing conns, on
// the high side, so that thousands of entries are encoded into one buffer
// that never has to grow and be copied.
func connsFrameSize(conns []proxywatch.ConnInfo) int {
	n := 64
	for i := range conns {
		c := &conns[i]
		n += connEntryOverhead + len(c.Method) + len(c.Host) + len(c.URL) + len(c.Client) +
			len(c.Protocol) + len(c.EndReason) + len(c.Err)
	}
	return n
}

// connEntryOverhead is an encoded entry without its strings: keys, numbers
// and times.
const connEntryOverhead = 240

func (h *Hub) subscribed(t topicSet) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topics&t != 0
}

// updateTopicsLocked recomputes topics after a client subscribed or was
// dropped.
func (h *Hub) updateTopicsLocked() {
	var t topicSet
	for c := range h.clients {
		t |= c.topics
	}
	h.topics = t
}

// broadcast queues frame for every client subscribed to t.
func (h *Hub) broadcast(t topicSet, frame []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if c.topics&t != 0 {
			h.enqueueLocked(c, outgoing{frame: frame})
		}
	}
}

// ObserveConn pushes e as an event message to the clients subscribed to
// events, and adds it to the next eventBatch for those subscribed to
// eventBatches. It implements proxywatch.ConnObserver; the Proxy calls it.
func (h *Hub) ObserveConn(e proxywatch.ConnEvent) {
	ev, ok := EventFromConn(e)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if h.topics&topicEvents != 0 {
		frame := h.mustEncode(TypeEvent, ev, nil)
		for c := range h.clients {
			if c.topics&topicEvents != 0 {
				h.enqueueLocked(c, outgoing{frame: frame})
			}
		}
	}
	if h.topics&topicEventBatches != 0 {
		h.batchLocked(ev)
		if len(h.events) >= maxBatchEvents {
			h.flushEventsLocked()
		}
	}
}

// batchLocked adds ev to the pending event batch. A closed event whose
// connection's opened event is still pending supersedes it: at thousands of
// short requests a second, most connections open and close within one
// interval, and sending each once halves what every dashboard has to read,
// while no dashboard could have shown it live for longer than the interval.
func (h *Hub) batchLocked(ev Event) {
	switch ev.Event {
	case "opened":
		if h.opened == nil {
			h.opened = make(map[proxywatch.ConnID]int)
		}
		h.opened[ev.Conn.ID] = len(h.events)
	case "closed":
		if i, ok := h.opened[ev.Conn.ID]; ok {
			delete(h.opened, ev.Conn.ID)
			h.events[i] = Event{} // superseded: left out of the frame
		}
	}
	h.events = append(h.events, ev)
}
