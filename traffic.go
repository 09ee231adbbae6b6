package proxywatch

import (
	"time"
)

// TrafficSample is what the sampler measured over one interval.
type TrafficSample struct {
	Time     time.Time     // when the sample was taken
	Interval time.Duration // real time since the previous sample (not the nominal interval)

	// Up and Down are the bytes counted during Interval; UpTotal and DownTotal
	// are the running totals since the Proxy was created. Up is client to
	// upstream, Down is upstream to client (package documentation, # Counting).
	Up, Down           uint64
	UpTotal, DownTotal uint64

	Live int // connections in the live set at Time
}

// UpRate returns Up in bytes per second over the sample's real interval.
func (s TrafficSample) UpRate() float64 { return perSecond(s.Up, s.Interval) }

// DownRate returns Down in bytes per second over the sample's real interval.
func (s TrafficSample) DownRate() float64 { return perSecond(s.Down, s.Interval) }

func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Stats is a snapshot of the Proxy's counters.
type Stats struct {
	// Up and Down are the bytes counted since New: up is client to upstream,
	// down upstream to client. Each equals the sum over every connection,
	// live and closed, by construction: it is that sum.
	Up, Down       uint64
	Live           int    // connections in the live set
	Opened, Closed uint64 // connections ever opened and closed
	Logs           uint64 // log records made (some log observer wanted their level), dropped ones included
	Dropped        uint64 // observer events dropped because an observer did not keep up
}

// Stats returns a snapshot of the Proxy's counters.
func (p *Proxy) Stats() Stats {
	p.reg.mu.Lock()
	up, down := p.reg.totalsLocked()
	s := Stats{Up: up, Down: down, Live: len(p.reg.live), Opened: p.reg.opened, Closed: p.reg.closed}
	p.reg.mu.Unlock()
	s.Logs = p.sink.accepted()
	s.Dropped = p.obs.dropped.Load()
	return s
}

// sampler is the Proxy's one periodic goroutine: it computes per-connection
// rates over the real elapsed interval, closes idle client connections and
// hands a TrafficSample to the traffic observers.
func (p *Proxy) sampler(stop <-chan struct{}) {
	t := time.NewTicker(p.sampleInterval)
	defer t.Stop()
	prev := time.Now()
	st := p.Stats()
	prevUp, prevDown := st.Up, st.Down
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			now := time.Now() // the tick's own time is stale when the goroutine ran late
			s := p.sample(now)
			s.Interval = now.Sub(prev)
			s.Up, s.Down = s.UpTotal-prevUp, s.DownTotal-prevDown
			prev, prevUp, prevDown = now, s.UpTotal, s.DownTotal
			p.emitTraffic(s)
			if p.idleTimeout > 0 {
				p.closeIdle(now)
			}
		}
	}
}

// sample updates every live entry's rates and returns the totals.
func (p *Proxy) sample(now time.Time) TrafficSample {
	p.reg.mu.Lock()
	defer p.reg.mu.Unlock()
	s := TrafficSample{Time: now, Live: len(p.reg.live)}
	s.UpTotal, s.DownTotal = p.reg.closedUp, p.reg.closedDown
	for _, e := range p.reg.live {
		up, down := e.up.Load(), e.down.Load()
		s.UpTotal += up
		s.DownTotal += down
		if e.busy && (up != e.lastUp || down != e.lastDown) {
			// A plain request whose bytes move is not idle, even while
			// net/http still buffers them and its client connection has
			// not seen a byte (the idle timeout looks at that connection).
			e.client.wire.Add(1)
		}
		// Every entry that was live at the last sample was measured then:
		// its interval is the registry's, not one of its own.
		if e.sampled {
			dt := now.Sub(p.reg.sampledAt)
			e.upRate = perSecond(up-e.lastUp, dt)
			e.downRate = perSecond(down-e.lastDown, dt)
		} else if dt := now.Sub(e.info.Start); dt > 0 {
			e.upRate = perSecond(up, dt)
			e.downRate = perSecond(down, dt)
		}
		e.lastUp, e.lastDown, e.sampled = up, down, true
	}
	p.reg.sampledAt = now
	return s
}

// The counting wrappers below are the whole I/O path: each Read and Write does
// one atomic add on its connection's counter. They never call an observer.
