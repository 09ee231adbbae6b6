package hub

import "github.com/proxywatch/proxywatch"

// Source is the data source interface, exported for the protocol tests that
// need no proxy (auth, framing, subscriptions fed through ObserveLog and
// ObserveConn). Tests about proxying use a real *proxywatch.Proxy.
type Source = source

// NewWithSource is New over any Source.
func NewWithSource(src Source, opts *Options) *Hub { return newHub(src, opts) }

// PushConnectionsNow runs one connections push, as the ticker does.
func (h *Hub) PushConnectionsNow() { h.pushConnections() }

// EncodeConnections encodes a connections message as a push does.
func EncodeConnections(conns []proxywatch.ConnInfo) []byte {
	return appendConnsFrame(make([]byte, 0, connsFrameSize(conns)), TypeConnections, conns, nil)
}

// FlushEventsNow sends the pending event batch, as the ticker does.
func (h *Hub) FlushEventsNow() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.flushEventsLocked()
}
