package proxywatch

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// observers is the set of registered observers. Each observer gets its own
// bounded queues and its own goroutine, so an observer that is slow or blocks
// delays only itself: the proxy's goroutines never wait for it, and the events
// it cannot take are dropped and counted.
type observers struct {
	mu      sync.Mutex
	list    atomic.Pointer[[]*subscriber] // copy on write; read without a lock when emitting
	started bool
	closed  bool
	queue   int
	dropped atomic.Uint64 // all observers, all kinds
}

// subscriber is one registered observer with its queues and goroutine.
type subscriber struct {
	traffic TrafficObserver
	conns   ConnObserver
	logs    LogObserver
	leveler slog.Leveler // logs, when it says the lowest level it wants

	trafficQ chan TrafficSample
	connQ    chan ConnEvent
	logQ     *logQueue
	missed   atomic.Uint64 // log records dropped since the last one queued
	logBatch []LogRecord   // the log records being delivered; the goroutine's own

	kick     chan struct{} // batchFull events are queued: deliver now
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	running  atomic.Bool
}

func (o *observers) add(s *subscriber) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	old := o.load()
	next := make([]*subscriber, 0, len(old)+1)
	next = append(append(next, old...), s)
	o.list.Store(&next)
	if o.started {
		s.start()
	}
}

func (o *observers) remove(s *subscriber) {
	o.mu.Lock()
	old := o.load()
	next := make([]*subscriber, 0, len(old))
	for _, x := range old {
		if x != s {
			next = append(next, x)
		}
	}
	o.list.Store(&next)
	o.mu.Unlock()
	s.halt()
}

func (o *observers) load() []*subscriber {
	if l := o.list.Load(); l != nil {
		return *l
	}
	return nil
}

// start starts the goroutines of the observers registered so far and of every
// later one.
func (o *observers) start() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started = true
	for _, s := range o.load() {
		s.start()
	}
}

// stopAll stops every observer goroutine and waits for them. Events still
// queued are delivered first.
func (o *observers) stopAll() {
	o.mu.Lock()
	o.closed = true
	list := o.load()
	o.list.Store(nil)
	o.mu.Unlock()
	for _, s := range list {
		s.halt()
	}
}

func newSubscriber(t TrafficObserver, c ConnObserver, l LogObserver, queue int) *subscriber {
	s := &subscriber{traffic: t, conns: c, logs: l, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if t != nil {
		s.trafficQ = make(chan TrafficSample, 64)
	}
	if c != nil {
		s.connQ = make(chan ConnEvent, queue)
	}
	if l != nil {
		s.logQ = newLogQueue(queue)
		s.leveler, _ = l.(slog.Leveler)
	}
	return s
}

// wantsLog reports whether s wants log records at level l.
func (s *subscriber) wantsLog(l slog.Level) bool {
	return s.logQ != nil && (s.leveler == nil || l >= s.leveler.Level())
}

// wantsLog reports whether some log observer wants records at level l. The
// log sink asks before it makes a record: a record nobody wants is never
// formatted.
func (o *observers) wantsLog(l slog.Level) bool {
	for _, s := range o.load() {
		if s.wantsLog(l) {
			return true
		}
	}
	return false
}

// dropLogIfFull reports whether the queue of every log observer is full. If
// so, it counts the next record as dropped for each of them, as emitLog
// would, and the log sink does not make that record at all: dropping costs
// no formatting and no allocation.
func (o *observers) dropLogIfFull() bool {
	list := o.load()
	n := 0
	for _, s := range list {
		if s.logQ == nil {
			continue
		}
		if !s.logQ.full() {
			return false
		}
		n++
	}
	if n == 0 {
		return false
	}
	for _, s := range list {
		if s.logQ != nil {
			s.missed.Add(1)
		}
	}
	o.dropped.Add(uint64(n))
	return true
}

func (s *subscriber) start() {
	if s.running.CompareAndSwap(false, true) {
		go s.run()
	}
}

// halt stops the goroutine after it delivered what is queued, and waits.
func (s *subscriber) halt() {
	s.stopOnce.Do(func() { close(s.stop) })
	if s.running.Load() {
		<-s.done
	}
}

// batchWindow is how long an observer's goroutine, woken by an event, lets
// more events queue up before it delivers them all. Waking a goroutine costs
// more than delivering an event to it, so a busy proxy delivers in batches,
// waking each observer at most about once per window instead of twice per
// connection; an idle proxy wakes no one. Events are late by at most this.
// The wait ends early when batchFull events are queued (the emitting side
// kicks), and there is none after a batch that large: a flood is delivered
// as fast as the observer takes it.
const (
	batchWindow = 5 * time.Millisecond
	batchFull   = 256
)

func (s *subscriber) run() {
	defer close(s.done)
	wait := time.NewTimer(batchWindow)
	wait.Stop()
	flood := false
	for {
		if s.queued() == 0 {
			select {
			case t := <-s.trafficQ:
				s.traffic.ObserveTraffic(t)
			case e := <-s.connQ:
				s.conns.ObserveConn(e)
			case <-s.logQ.readyChan():
			case <-s.stop:
				s.drain()
				return
			}
		}
		if !flood && s.queued() < batchFull {
			wait.Reset(batchWindow)
			select {
			case <-wait.C:
			case <-s.kick:
				wait.Stop()
			case <-s.stop:
				wait.Stop()
				s.drain()
				return
			}
		}
		flood = s.deliverQueued() >= batchFull
	}
}

// queued returns how many events are queued for s.
func (s *subscriber) queued() int {
	return len(s.trafficQ) + len(s.connQ) + s.logQ.len()
}

// kickIfFull ends the observer's batch wait when queued events make a batch.
func (s *subscriber) kickIfFull(queued int) {
	if queued >= batchFull {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// deliverQueued delivers the events queued now, and no more, so that a
// producer faster than the observer cannot keep it from checking stop. It
// returns how many it delivered. Each kind is taken from its own queue in
// turn (events of one kind stay in order; kinds were never ordered between
// them): a receive from one channel costs a fraction of a select over three,
// and log records are taken by the batch.
func (s *subscriber) deliverQueued() int {
	n := 0
	for range len(s.trafficQ) {
		s.traffic.ObserveTraffic(<-s.trafficQ)
		n++
	}
	for range len(s.connQ) {
		s.conns.ObserveConn(<-s.connQ)
		n++
	}
	for left := s.logQ.len(); left > 0; {
		k := s.deliverLogs(left)
		if k == 0 {
			break
		}
		left -= k
		n += k
	}
	return n
}

// deliverLogs takes up to max queued log records and delivers them. It
// returns how many it delivered.
func (s *subscriber) deliverLogs(max int) int {
	if s.logBatch == nil {
		s.logBatch = make([]LogRecord, logBatchSize)
	}
	batch := s.logQ.take(s.logBatch[:min(max, logBatchSize)])
	for i := range batch {
		s.logs.ObserveLog(batch[i])
	}
	// The observer has its own copies; the batch must not keep their
	// messages and attrs alive.
	clear(batch)
	return len(batch)
}

func (s *subscriber) drain() {
	for {
		select {
		case t := <-s.trafficQ:
			s.traffic.ObserveTraffic(t)
			continue
		case e := <-s.connQ:
			s.conns.ObserveConn(e)
			continue
		default:
		}
		if s.logQ.len() == 0 || s.deliverLogs(logBatchSize) == 0 {
			return
		}
	}
}

// logBatchSize is how many log records the observer's goroutine takes from
// its queue at a time.
const logBatchSize = 64

// logQueue is an observer's bounded queue of log records. The goroutines
// that log append to it under a mutex, and the observer's goroutine takes up
// to logBatchSize records at a time, so the two sides meet once per batch
// rather than once per record as they do on a channel: at a million records
// a second, contention on a channel's lock cost more than the records' hand
// over itself. A nil *logQueue is an empty queue that is never ready.
type logQueue struct {
	mu    sync.Mutex
	ring  []LogRecord // the queue, from head, count records, wrapping
	head  int
	count int

	n     atomic.Int64  // count, read without the lock
	ready chan struct{} // holds a token after a record came to an empty queue
}

func newLogQueue(size int) *logQueue {
	return &logQueue{ring: make([]LogRecord, size), ready: make(chan struct{}, 1)}
}

// push queues r unless the queue is full. It returns how many records are
// queued then.
func (q *logQueue) push(r LogRecord) (queued int, ok bool) {
	q.mu.Lock()
	if q.count == len(q.ring) {
		q.mu.Unlock()
		return q.count, false
	}
	i := q.head + q.count
	if i >= len(q.ring) {
		i -= len(q.ring)
	}
	q.ring[i] = r
	q.count++
	queued = q.count
	q.n.Store(int64(queued))
	q.mu.Unlock()
	if queued == 1 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return queued, true
}

// take moves up to len(dst) records, the oldest first, into dst and returns
// the part of dst it filled.
func (q *logQueue) take(dst []LogRecord) []LogRecord {
	q.mu.Lock()
	k := min(len(dst), q.count)
	first := min(k, len(q.ring)-q.head)
	copy(dst, q.ring[q.head:q.head+first])
	clear(q.ring[q.head : q.head+first])
	copy(dst[first:k], q.ring[:k-first])
	clear(q.ring[:k-first])
	q.head += k
	if q.head >= len(q.ring) {
		q.head -= len(q.ring)
	}
	q.count -= k
	q.n.Store(int64(q.count))
	q.mu.Unlock()
	return dst[:k]
}

// len returns how many records are queued.
func (q *logQueue) len() int {
	if q == nil {
		return 0
	}
	return int(q.n.Load())
}

// full reports whether the queue has no room for a record.
func (q *logQueue) full() bool { return q.len() >= len(q.ring) }

// readyChan is the channel that holds a token when records came to an empty
// queue; nil (never ready) for a nil queue.
func (q *logQueue) readyChan() <-chan struct{} {
	if q == nil {
		return nil
	}
	return q.ready
}

// offer queues v for s without blocking: when q is full, v is dropped and
// counted. It reports whether v was queued.
func offer[T any](o *observers, s *subscriber, q chan T, v T) bool {
	queued := true
	select {
	case q <- v:
	default:
		o.dropped.Add(1)
		queued = false
	}
	s.kickIfFull(len(q))
	return queued
}

func (p *Proxy) emitTraffic(t TrafficSample) {
	for _, s := range p.obs.load() {
		if s.trafficQ != nil {
			offer(&p.obs, s, s.trafficQ, t)
		}
	}
}

func (p *Proxy) emitConn(e ConnEvent) {
	for _, s := range p.obs.load() {
		if s.connQ != nil {
			offer(&p.obs, s, s.connQ, e)
		}
	}
}

func (p *Proxy) emitLog(r LogRecord) {
	for _, s := range p.obs.load() {
		if s.logQ == nil {
			continue
		}
		r.Dropped = s.missed.Swap(0)
		queued, ok := s.logQ.push(r)
		if !ok {
			p.obs.dropped.Add(1)
			s.missed.Add(r.Dropped + 1)
		}
		s.kickIfFull(queued)
	}
}
