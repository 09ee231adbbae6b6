package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// hubWatchers are the dashboards watching proxywatch during the whole run:
// WebSocket clients of its hub, subscribed as the stock dashboard is (every
// topic, at its default log level, INFO), each reading every frame as it
// comes.
type hubWatchers struct {
	conns  []*websocket.Conn
	frames atomic.Int64
	bytes  atomic.Int64
	start  time.Time
	topics string
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed []string // why clients ended before close
	done   bool
}

// watchTopics are the topics the stock dashboard subscribes to.
const watchTopics = "traffic,connections,logs,events"

func watchHub(addr, token string, n int, topics string) (*hubWatchers, error) {
	sub, err := json.Marshal(map[string]any{"action": "subscribe", "topics": strings.Split(topics, ","), "logLevel": "INFO"})
	if err != nil {
		return nil, err
	}
	w := &hubWatchers{start: time.Now(), topics: topics}
	u := url.URL{Scheme: "ws", Host: addr, Path: "/", RawQuery: "token=" + url.QueryEscape(token)}
	for range n {
		c, resp, err := websocket.DefaultDialer.Dial(u.String(), nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, c)
		if err := c.WriteMessage(websocket.TextMessage, sub); err != nil {
			w.close()
			return nil, err
		}
		w.wg.Add(1)
		go w.read(c)
	}
	return w, nil
}

func (w *hubWatchers) read(c *websocket.Conn) {
	defer w.wg.Done()
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			w.mu.Lock()
			if !w.done {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					w.closed = append(w.closed, fmt.Sprintf("%d %s", ce.Code, ce.Text))
				} else {
					w.closed = append(w.closed, err.Error())
				}
			}
			w.mu.Unlock()
			return
		}
		w.frames.Add(1)
		w.bytes.Add(int64(len(b)))
	}
}

// summary says what the clients received, and whether any was cut off.
func (w *hubWatchers) summary() string {
	secs := time.Since(w.start).Seconds()
	w.mu.Lock()
	closed := append([]string(nil), w.closed...)
	w.mu.Unlock()
	s := fmt.Sprintf("%d hub clients (topics %s, log level INFO) received %d frames, %.1f MB in all (%.0f frames/s per client)",
		len(w.conns), w.topics, w.frames.Load(), float64(w.bytes.Load())/1e6, float64(w.frames.Load())/secs/float64(max(len(w.conns), 1)))
	if len(closed) == 0 {
		return s + "; none was dropped."
	}
	return s + fmt.Sprintf("; %d ended early: %v.", len(closed), closed)
}

func (w *hubWatchers) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	for _, c := range w.conns {
		_ = c.Close()
	}
	w.wg.Wait()
}
