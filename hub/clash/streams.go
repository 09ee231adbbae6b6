package clash

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/proxywatch/proxywatch"
)

// traffic is the JSON of a /traffic message.
type traffic struct {
	Up        uint64 `json:"up"`
	Down      uint64 `json:"down"`
	UpTotal   uint64 `json:"upTotal"`
	DownTotal uint64 `json:"downTotal"`
}

// memory is the JSON of a /memory message.
type memory struct {
	InUse   uint64 `json:"inuse"`
	OSLimit uint64 `json:"oslimit"`
}

// memoryInUse is the memory the Go runtime holds from the OS: all of
// it, less the heap it returned. It is read without stopping the world.
func memoryInUse() uint64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	total, released := s[0].Value.Uint64(), s[1].Value.Uint64()
	if released > total {
		return 0
	}
	return total - released
}

// memoryLimit is GOMEMLIMIT, 0 when none is set.
func memoryLimit() uint64 {
	l := debug.SetMemoryLimit(-1)
	if l <= 0 || l == math.MaxInt64 {
		return 0
	}
	return uint64(l)
}

// stream is one streaming response: an upgraded WebSocket, or a GET
// answered with newline-delimited JSON that ends when either side leaves.
type stream struct {
	api  *API
	ws   *websocket.Conn
	rc   *http.ResponseController
	w    http.ResponseWriter
	gone <-chan struct{} // the client went away
}

var errClosed = errors.New("clash API closed")

// openStream starts a stream for r, counted against MaxStreams; nil means it
// has answered already (503, or the failed upgrade). The caller must call
// closeStream.
func (c *API) openStream(w http.ResponseWriter, r *http.Request) *stream {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "API closed")
		return nil
	case c.streams >= c.maxStreams:
		c.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "Too many streams")
		return nil
	}
	c.streams++
	c.wg.Add(1)
	c.mu.Unlock()

	s := &stream{api: c}
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		s.w, s.rc, s.gone = w, http.NewResponseController(w), r.Context().Done()
		if err := s.rc.Flush(); err != nil {
			c.log.Debug("clash: flushing a stream", "err", err)
		}
		return s
	}
	ws, err := c.upgrader.Upgrade(w, r, nil) // on error it has answered already
	if err != nil {
		c.releaseStream()
		return nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "shutdown"), time.Now().Add(closeGrace))
		ws.Close()
		c.releaseStream()
		return nil
	}
	c.conns[ws] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	ws.SetReadLimit(maxClientFrame)
	gone := make(chan struct{})
	s.ws, s.gone = ws, gone
	go func() { // the reader: answers pings and close frames, notices the peer leaving
		defer c.wg.Done()
		defer close(gone)
		for {
			if _, _, err := ws.NextReader(); err != nil {
				return
			}
		}
	}()
	return s
}

func (c *API) releaseStream() {
	c.mu.Lock()
	c.streams--
	c.mu.Unlock()
	c.wg.Done()
}

// send writes one JSON message.
func (s *stream) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.sendRaw(b)
}

func (s *stream) sendRaw(b []byte) error {
	deadline := time.Now().Add(s.api.writeWait)
	if s.ws != nil {
		s.ws.SetWriteDeadline(deadline)
		return s.ws.WriteMessage(websocket.TextMessage, b)
	}
	if err := s.rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := s.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return s.rc.Flush()
}

// wait returns nil when ch delivers, or why the stream must end.
func (s *stream) wait(ch <-chan time.Time) error {
	select {
	case <-ch:
		return nil
	case <-s.gone:
		return io.EOF
	case <-s.api.done:
		return errClosed
	}
}

// closeStream ends s: a WebSocket gets a close frame (1001 when the API is
// closing, 1000 otherwise) and is closed; its reader then returns.
func (c *API) closeStream(s *stream, why error) {
	if s.ws != nil {
		code, text := websocket.CloseNormalClosure, ""
		if errors.Is(why, errClosed) {
			code, text = websocket.CloseGoingAway, "shutdown"
		}
		if !errors.Is(why, io.EOF) { // the peer is still there: say goodbye, briefly
			s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text),
				time.Now().Add(closeGrace))
			select { // let the peer answer the close frame
			case <-s.gone:
			case <-time.After(closeGrace):
			}
		}
		s.ws.Close()
		c.mu.Lock()
		delete(c.conns, s.ws)
		c.mu.Unlock()
	}
	c.releaseStream()
}

// observer is what the API registers with Observe: the log records feed the
// /logs streams, the sampler's traffic samples feed the /traffic streams.
type observer struct{ api *API }

func (o observer) ObserveLog(r proxywatch.LogRecord)         { o.api.observeLog(r) }
func (o observer) ObserveTraffic(s proxywatch.TrafficSample) { o.api.observeTraffic(s) }

// trafficSub is one open /traffic stream's share of the samples: what it has
// not sent yet, summed over the samples since its last message.
type trafficSub struct {
	mu                 sync.Mutex
	up, down           uint64
	upTotal, downTotal uint64
	interval, last     time.Duration // summed real interval; the newest sample's
	ready              chan struct{} // cap 1: a sample arrived
}

// observeTraffic adds s to every open /traffic stream. It implements the
// API's proxywatch.TrafficObserver; the Proxy calls it once per sample.
func (c *API) observeTraffic(s proxywatch.TrafficSample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t := range c.traffic {
		t.mu.Lock()
		t.up += s.Up
		t.down += s.Down
		t.upTotal, t.downTotal = s.UpTotal, s.DownTotal
		t.interval += s.Interval
		t.last = s.Interval
		t.mu.Unlock()
		select {
		case t.ready <- struct{}{}:
		default:
		}
	}
}

// take returns the sums since the last message once they cover about
// every (within half a sample), and resets them; ok is false before that.
func (t *trafficSub) take(every time.Duration) (m traffic, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.interval == 0 || t.interval+t.last/2 < every {
		return traffic{}, false
	}
	secs := t.interval.Seconds()
	m = traffic{
		Up:        perSecond(t.up, secs),
		Down:      perSecond(t.down, secs),
		UpTotal:   t.upTotal,
		DownTotal: t.downTotal,
	}
	t.up, t.down, t.interval = 0, 0, 0
	return m, true
}

// serveTraffic streams {"up","down","upTotal","downTotal"} from the Proxy's
// traffic samples: one message per TrafficInterval, rounded to whole samples
// (a message goes out once its samples cover the interval within half a
// sample, so it never comes faster than the sampler). Up and down are bytes
// per second over the samples' real time; the totals are every byte since
// the Proxy was created, as of the newest sample.
func (c *API) serveTraffic(w http.ResponseWriter, r *http.Request) {
	s := c.openStream(w, r)
	if s == nil {
		return
	}
	t := &trafficSub{ready: make(chan struct{}, 1)}
	c.mu.Lock()
	c.traffic[t] = struct{}{}
	c.mu.Unlock()
	var err error
	for err == nil {
		select {
		case <-t.ready:
		case <-s.gone:
			err = io.EOF
		case <-c.done:
			err = errClosed
		}
		if err != nil {
			break
		}
		if m, ok := t.take(c.trafficEvery); ok {
			err = s.send(m)
		}
	}
	c.mu.Lock()
	delete(c.traffic, t)
	c.mu.Unlock()
	c.closeStream(s, err)
}

func perSecond(n uint64, secs float64) uint64 {
	if n == 0 || secs <= 0 {
		return 0
	}
	return uint64(math.Round(float64(n) / secs))
}

// serveMemory streams {"inuse","oslimit"} every MemoryInterval, the first at
// once.
func (c *API) serveMemory(w http.ResponseWriter, r *http.Request) {
	s := c.openStream(w, r)
	if s == nil {
		return
	}
	t := time.NewTicker(c.memoryEvery)
	defer t.Stop()
	limit := memoryLimit()
	var err error
	for err == nil {
		if err = s.send(memory{InUse: memoryInUse(), OSLimit: limit}); err != nil {
			break
		}
		err = s.wait(t.C)
	}
	c.closeStream(s, err)
}

// serveConnections answers one snapshot to a GET, and streams one at once
// and then one every ?interval= milliseconds to a WebSocket.
func (c *API) serveConnections(w http.ResponseWriter, r *http.Request) {
	every := c.connsEvery
	if v := r.URL.Query().Get("interval"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 {
			writeError(w, http.StatusBadRequest, "Body invalid")
			return
		}
		every = time.Duration(min(ms, maxConnInterval.Milliseconds())) * time.Millisecond
	}
	every = max(every, c.minConnsEvery)
	if !websocket.IsWebSocketUpgrade(r) {
		writeJSON(w, http.StatusOK, c.snapshot())
		return
	}
	s := c.openStream(w, r)
	if s == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var err error
	for err == nil {
		if err = s.send(c.snapshot()); err != nil {
			break
		}
		err = s.wait(t.C)
	}
	c.closeStream(s, err)
}
