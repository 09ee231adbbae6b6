package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// hubWatchers are the dashboards watching proxywatch during the whole run:
// WebSocket clients of its hub, subscribed as the stock dashboard is (every
// topic, at its default log level, INFO), each reading every frame as it
// comes. A client the hub drops reconnects a second later, as the stock
// dashboard does, so that the proxy stays watched.
type hubWatchers struct {
	url    string
	sub    []byte
	topics string
	n      int
	start  time.Time
	done   chan struct{}
	wg     sync.WaitGroup

	frames, bytes atomic.Int64

	mu    sync.Mutex
	conns map[*websocket.Conn]struct{}
	drops map[string]int // why the hub ended a client, and how often
}

// watchTopics are the topics the stock dashboard subscribes to.
const watchTopics = "traffic,connectionsDelta,logs,eventBatches"

// reconnectDelay is the stock dashboard's first reconnect delay.
const reconnectDelay = time.Second

func watchHub(addr, token string, n int, topics string) (*hubWatchers, error) {
	sub, err := json.Marshal(map[string]any{"action": "subscribe", "topics": strings.Split(topics, ","), "logLevel": "INFO"})
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "ws", Host: addr, Path: "/", RawQuery: "token=" + url.QueryEscape(token)}
	w := &hubWatchers{
		url: u.String(), sub: sub, topics: topics, n: n, start: time.Now(),
		done: make(chan struct{}), conns: map[*websocket.Conn]struct{}{}, drops: map[string]int{},
	}
	for range n {
		c, err := w.dial()
		if err != nil {
			w.close()
			return nil, err
		}
		w.wg.Add(1)
		go w.watch(c)
	}
	return w, nil
}

func (w *hubWatchers) dial() (*websocket.Conn, error) {
	c, resp, err := websocket.DefaultDialer.Dial(w.url, nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	if err := c.WriteMessage(websocket.TextMessage, w.sub); err != nil {
		_ = c.Close()
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.done:
		_ = c.Close()
		return nil, errors.New("closed")
	default:
	}
	w.conns[c] = struct{}{}
	return c, nil
}

// watch reads c until it ends, then reconnects, until close.
func (w *hubWatchers) watch(c *websocket.Conn) {
	defer w.wg.Done()
	for {
		err := w.read(c)
		w.mu.Lock()
		delete(w.conns, c)
		w.mu.Unlock()
		_ = c.Close()
		select {
		case <-w.done:
			return
		default:
		}
		why := err.Error()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			why = fmt.Sprintf("%d %s", ce.Code, ce.Text)
		}
		w.mu.Lock()
		w.drops[why]++
		w.mu.Unlock()
		for {
			select {
			case <-w.done:
				return
			case <-time.After(reconnectDelay):
			}
			if c, err = w.dial(); err == nil {
				break
			}
		}
	}
}

func (w *hubWatchers) read(c *websocket.Conn) error {
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return err
		}
		w.frames.Add(1)
		w.bytes.Add(int64(len(b)))
	}
}

// summary says what the clients received, and how often the hub dropped one.
func (w *hubWatchers) summary() string {
	secs := time.Since(w.start).Seconds()
	s := fmt.Sprintf("%d hub clients (topics %s, log level INFO) received %d frames, %.1f MB in all (%.0f frames/s per client)",
		w.n, w.topics, w.frames.Load(), float64(w.bytes.Load())/1e6, float64(w.frames.Load())/secs/float64(max(w.n, 1)))
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.drops) == 0 {
		return s + "; the hub dropped none."
	}
	var whys []string
	total := 0
	for why, n := range w.drops {
		whys = append(whys, fmt.Sprintf("%d× %q", n, why))
		total += n
	}
	sort.Strings(whys)
	return s + fmt.Sprintf("; the hub ended clients %d times (%s), and each reconnected %v later.", total, strings.Join(whys, ", "), reconnectDelay)
}

func (w *hubWatchers) close() {
	w.mu.Lock()
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	for c := range w.conns {
		_ = c.Close()
	}
	w.mu.Unlock()
	w.wg.Wait()
}
