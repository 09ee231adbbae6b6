package proxywatch

import "time"

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

// TrafficObserver receives one TrafficSample per sampler tick. See the package
// documentation (# Observers) for the delivery contract.
type TrafficObserver interface {
	ObserveTraffic(TrafficSample)
}

// TrafficObserverFunc adapts a function to TrafficObserver.
type TrafficObserverFunc func(TrafficSample)

// ObserveTraffic calls f(s). It implements TrafficObserver.
func (f TrafficObserverFunc) ObserveTraffic(s TrafficSample) { f(s) }

// MultiTrafficObserver returns an observer that passes each sample to every
// non-nil observer in obs, in order.
func MultiTrafficObserver(obs ...TrafficObserver) TrafficObserver {
	return TrafficObserverFunc(func(s TrafficSample) {
		for _, o := range obs {
			if o != nil {
				o.ObserveTraffic(s)
			}
		}
	})
}
