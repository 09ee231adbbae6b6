package hub

// Source is the data source interface, exported for the protocol tests that
// need no proxy (auth, framing, subscriptions fed through ObserveLog and
// ObserveConn). Tests about proxying use a real *proxywatch.Proxy.
type Source = source

// NewWithSource is New over any Source.
func NewWithSource(src Source, opts *Options) *Hub { return newHub(src, opts) }
