package proxywatch

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSamplerTick measures one tick of the sampler with 10,000 live
// connections, each on a client connection of its own (the shape of 10,000
// open tunnels): the pass over the live set, the traffic sample handed to an
// observer, and the idle check of every client connection. A quarter of the
// connections move bytes between ticks. The target is a tick under 5 ms of
// CPU; "ms/tick" reports it.
func BenchmarkSamplerTick(b *testing.B) {
	const live = 10_000
	p := New(&Options{SampleInterval: time.Hour, IdleTimeout: time.Hour})
	var got atomic.Uint64
	p.Observe(TrafficObserverFunc(func(s TrafficSample) { got.Store(s.DownTotal) }))
	entries := make([]*entry, live)
	for i := range entries {
		c := &clientConn{Conn: nopConn{}, p: p, remote: fmt.Sprintf("10.0.%d.%d:%d", i/250, i%250, 40000+i)}
		c.hijacked.Store(true)
		p.clients.add(c)
		e := &entry{info: connIdent{
			ID:       ConnID(i + 1),
			Protocol: ProtoTunnel,
			Host:     "example.com:443",
			Client:   c.remote,
			Start:    time.Now(),
		}, client: c}
		p.open(e)
		entries[i] = e
	}
	b.ResetTimer()
	for b.Loop() {
		for _, e := range entries[:live/4] {
			e.down.Add(16 << 10)
			e.up.Add(512)
			e.client.wire.Add(16<<10 + 512)
		}
		now := time.Now()
		s := p.sample(now)
		p.emitTraffic(s)
		p.closeIdle(now)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/tick")
	p.Close() // delivers what the observer was handed
	if got.Load() == 0 {
		b.Fatal("the traffic observer saw no bytes")
	}
}
