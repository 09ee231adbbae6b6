package hub_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(readerEnvURL); url != "" { // a child of startReaders
		n, _ := strconv.Atoi(os.Getenv(readerEnvClients))
		os.Exit(readerChild(url, os.Getenv(readerEnvTopic), n))
	}
	goleak.VerifyTestMain(m)
}

// readTimeout only keeps a broken test from hanging; nothing is asserted
// about speed.
const readTimeout = 20 * time.Second

// memSource is an in-memory data source for the protocol tests that are not
// about proxying: what it reports is whatever the test put in it.
type memSource struct {
	mu       sync.Mutex
	stats    proxywatch.Stats
	conns    []proxywatch.ConnInfo
	history  []proxywatch.ConnInfo
	observed []any
}

func (s *memSource) Stats() proxywatch.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *memSource) setTotals(up, down uint64, live int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Up, s.stats.Down, s.stats.Live = up, down, live
}

func (s *memSource) setConns(conns []proxywatch.ConnInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns = conns
}

func (s *memSource) Connections() []proxywatch.ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]proxywatch.ConnInfo(nil), s.conns...)
}

func (s *memSource) History() []proxywatch.ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]proxywatch.ConnInfo(nil), s.history...)
}

func (s *memSource) CloseConnection(id proxywatch.ConnID) (proxywatch.ConnInfo, bool) {
	closed := s.CloseConnections(func(ci proxywatch.ConnInfo) bool { return ci.ID == id })
	if len(closed) == 0 {
		return proxywatch.ConnInfo{}, false
	}
	return closed[0], true
}

func (s *memSource) CloseConnections(match func(proxywatch.ConnInfo) bool) []proxywatch.ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var closed, kept []proxywatch.ConnInfo
	for _, ci := range s.conns {
		if match(ci) {
			closed = append(closed, ci)
		} else {
			kept = append(kept, ci)
		}
	}
	s.conns = kept
	return closed
}

// Observe records o and, when o is a TrafficObserver, feeds it a sample of
// the totals every memSampleInterval, as the Proxy's sampler does, until the
// returned stop is called; stop waits for the feeding goroutine to end.
func (s *memSource) Observe(o any) func() {
	s.mu.Lock()
	s.observed = append(s.observed, o)
	s.mu.Unlock()
	stop, done := make(chan struct{}), make(chan struct{})
	t, ok := o.(proxywatch.TrafficObserver)
	if !ok {
		close(done)
	} else {
		go s.sample(t, stop, done)
	}
	return func() {
		close(stop)
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		s.observed = nil
	}
}

// memSampleInterval is memSource's sampler period.
const memSampleInterval = 5 * time.Millisecond

// sample is memSource's sampler: the differences of the totals over the real
// interval, as proxywatch's.
func (s *memSource) sample(o proxywatch.TrafficObserver, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(memSampleInterval)
	defer tick.Stop()
	prev, st := time.Now(), s.Stats()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			cur := s.Stats()
			o.ObserveTraffic(proxywatch.TrafficSample{
				Time: now, Interval: now.Sub(prev),
				Up: cur.Up - st.Up, Down: cur.Down - st.Down,
				UpTotal: cur.Up, DownTotal: cur.Down, Live: cur.Live,
			})
			prev, st = now, cur
		}
	}
}

// setup starts a Hub over src behind an httptest server; both are closed
// when the test ends.
func setup(t *testing.T, src hub.Source, opts *hub.Options) (*hub.Hub, *httptest.Server) {
	t.Helper()
	if opts == nil {
		opts = &hub.Options{}
	}
	if opts.Token == "" {
		opts.Token = "s3cret"
	}
	h := hub.NewWithSource(src, opts)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, srv
}

// serve puts h behind an httptest server; both are closed when the test
// ends.
func serve(t testing.TB, h *hub.Hub) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return srv
}

func wsURL(srv *httptest.Server, query string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/start" + query
}

// client is a real gorilla/websocket client.
type client struct {
	t    *testing.T
	conn *websocket.Conn
}

// dial connects with ?token=s3cret and reads the hello frame.
func dial(t *testing.T, srv *httptest.Server) (*client, hub.Hello) {
	t.Helper()
	c := dialURL(t, wsURL(srv, "?token=s3cret"), nil)
	var hello hub.Hello
	c.nextData(hub.TypeHello, &hello)
	return c, hello
}

func dialURL(t *testing.T, url string, header http.Header) *client {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn}
}

func (c *client) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next returns the next frame, its raw bytes too.
func (c *client) next() (hub.Message, []byte) {
	c.t.Helper()
	m, raw, err := c.read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m, raw
}

func (c *client) read() (hub.Message, []byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(readTimeout))
	_, raw, err := c.conn.ReadMessage()
	if err != nil {
		return hub.Message{}, nil, err
	}
	var m hub.Message
	if err := json.Unmarshal(raw, &m); err != nil {
		return hub.Message{}, raw, err
	}
	return m, raw, nil
}

// nextData reads the next frame, requires its type and decodes its data.
func (c *client) nextData(typ string, data any) hub.Message {
	c.t.Helper()
	m, raw := c.next()
	if m.Type != typ {
		c.t.Fatalf("got %s, want %s", raw, typ)
	}
	if data != nil {
		if err := json.Unmarshal(m.Data, data); err != nil {
			c.t.Fatalf("decode %s: %v", raw, err)
		}
	}
	return m
}

// skipUntil reads frames until one of type typ, which it decodes.
func (c *client) skipUntil(typ string, data any) hub.Message {
	c.t.Helper()
	for {
		m, raw := c.next()
		if m.Type != typ {
			continue
		}
		if data != nil {
			if err := json.Unmarshal(m.Data, data); err != nil {
				c.t.Fatalf("decode %s: %v", raw, err)
			}
		}
		return m
	}
}

// subscribe sends a subscribe and reads frames up to its answer.
func (c *client) subscribe(req hub.Request) hub.Subscribed {
	c.t.Helper()
	req.Action = hub.ActionSubscribe
	c.send(req)
	var s hub.Subscribed
	c.skipUntil(hub.TypeSubscribed, &s)
	return s
}

// closeError reads until the socket fails and returns the close code, or -1
// when the connection ended without a close frame.
func (c *client) closeCode() int {
	c.t.Helper()
	for {
		_, _, err := c.read()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		return -1
	}
}

// waitFor polls cond until it holds; it fails the test only after a long
// time, as a guard against hanging, not as a speed requirement.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(readTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

// startProxy serves a Proxy on loopback until the test ends.
func startProxy(t *testing.T) (*proxywatch.Proxy, *url.URL) {
	t.Helper()
	p := proxywatch.New(&proxywatch.Options{SampleInterval: 50 * time.Millisecond})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return p, &url.URL{Scheme: "http", Host: l.Addr().String()}
}

// streamServer sends an endless body in 32 KiB chunks, one every 10 ms, until
// the client goes away: a large transfer that is always in flight.
func streamServer(tlsOn bool) *httptest.Server {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		w.Header().Set("Content-Length", fmt.Sprint(1<<40)) // never completes
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	if tlsOn {
		return httptest.NewTLSServer(handler)
	}
	return httptest.NewServer(handler)
}

// errNoError stands for a transfer that ended without an error.
var errNoError = errors.New("the transfer ended without error")
