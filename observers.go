package proxywatch

import (
	"fmt"
	"sync"
)

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

// ConnObserver receives connection lifecycle events. See the package
// documentation (# Observers) for the delivery contract.
type ConnObserver interface {
	ObserveConn(ConnEvent)
}

// ConnObserverFunc adapts a function to ConnObserver.
type ConnObserverFunc func(ConnEvent)

// ObserveConn calls f(e). It implements ConnObserver.
func (f ConnObserverFunc) ObserveConn(e ConnEvent) { f(e) }

// MultiConnObserver returns an observer that passes each event to every non-nil
// observer in obs, in order.
func MultiConnObserver(obs ...ConnObserver) ConnObserver {
	return ConnObserverFunc(func(e ConnEvent) {
		for _, o := range obs {
			if o != nil {
				o.ObserveConn(e)
			}
		}
	})
}

// LogObserver receives log records. See the package documentation
// (# Observers) for the delivery contract.
type LogObserver interface {
	ObserveLog(LogRecord)
}

// LogObserverFunc adapts a function to LogObserver.
type LogObserverFunc func(LogRecord)

// ObserveLog calls f(r). It implements LogObserver.
func (f LogObserverFunc) ObserveLog(r LogRecord) { f(r) }

// MultiLogObserver returns an observer that passes each record to every
// non-nil observer in obs, in order.
func MultiLogObserver(obs ...LogObserver) LogObserver {
	return LogObserverFunc(func(r LogRecord) {
		for _, o := range obs {
			if o != nil {
				o.ObserveLog(r)
			}
		}
	})
}

// Observe starts delivering events to o, which must implement at least one of
// TrafficObserver, ConnObserver and LogObserver; each it implements is used.
// A LogObserver that also implements slog.Leveler says with Level the lowest
// level it wants now (see the package documentation, # Logs).
// o gets its own goroutine and queues (see the package documentation,
// # Observers). The returned stop function removes o, delivers what was queued
// for it and waits until o is no longer called; it is idempotent. Observe
// panics if o implements none of the three interfaces.
func (p *Proxy) Observe(o any) (stop func()) {
	t, _ := o.(TrafficObserver)
	c, _ := o.(ConnObserver)
	l, _ := o.(LogObserver)
	if t == nil && c == nil && l == nil {
		panic(fmt.Sprintf("proxywatch: Observe(%T): it implements none of TrafficObserver, ConnObserver and LogObserver", o))
	}
	s := newSubscriber(t, c, l, p.obs.queue)
	if !p.start() {
		return func() {} // closed: nothing will ever be delivered
	}
	p.obs.add(s)
	var once sync.Once
	return func() { once.Do(func() { p.obs.remove(s) }) }
}
