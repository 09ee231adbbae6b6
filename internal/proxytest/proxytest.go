// Package proxytest holds the test helpers that packages of more than one
// module share (the exporters, hub/clash): a real Proxy on loopback, clients
// that use it, upstreams, hand-made CONNECT tunnels, and a log observer that
// counts what it is given.
package proxytest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
)

// Serve starts p on a loopback listener and returns its URL. The proxy is
// closed, and Serve's return checked, when the test ends.
func Serve(t testing.TB, p *proxywatch.Proxy) *url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		_ = p.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return &url.URL{Scheme: "http", Host: l.Addr().String()}
}

// Client returns an http.Client whose requests go through the proxy.
func Client(t testing.TB, proxy *url.URL) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(proxy)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// Upstream answers every request with a body of size bytes (with a
// Content-Length), after reading the request body.
func Upstream(t testing.TB, size int) *httptest.Server {
	body := strings.Repeat("x", size)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", fmt.Sprint(size))
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

// Echo accepts TCP connections and echoes each back until EOF.
func Echo(t testing.TB) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return l
}

// Connect opens a CONNECT tunnel to target through the proxy by hand, so that
// the test knows every byte that goes through it, and returns the connection
// right after the proxy's reply.
func Connect(t testing.TB, proxy *url.URL, target string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", proxy.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 || br.Buffered() != 0 {
		c.Close()
		t.Fatalf("CONNECT: %v, %v", resp, err)
	}
	return c.(*net.TCPConn)
}

// UpgradeEcho is an upstream that answers any request with a WebSocket 101
// and then echoes the raw bytes back until EOF (no framing: the proxy does
// not look at frames).
func UpgradeEcho(t testing.TB) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		_, _ = io.Copy(c, brw)
	}))
	t.Cleanup(s.Close)
	return s
}

// Upgrade sends a plain-HTTP WebSocket upgrade for target (an http:// URL)
// through the proxy and reads the 101. It returns the connection and the
// reader to read the rest from.
func Upgrade(t testing.TB, proxy *url.URL, target string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", proxy.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		target, u.Host)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	return c.(*net.TCPConn), br
}

// ClosedPort returns a loopback address that nothing listens on.
func ClosedPort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// WaitFor polls cond until it holds, and fails the test if it does not
// within 10 seconds (a bound for broken code, not a speed requirement).
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitIdle waits until p's live set is empty. The closed events of every
// connection are queued by then (the Proxy queues them under its registry
// lock), so the stop function of Proxy.Observe delivers them all.
func WaitIdle(t testing.TB, p *proxywatch.Proxy) {
	t.Helper()
	WaitFor(t, "the live set to empty", func() bool { return len(p.Connections()) == 0 })
}

// Observer is one proxywatch observer made of a ConnObserver and a
// LogObserver, so that an exporter and a LogCounter (through
// proxywatch.MultiLogObserver) see the very same log stream from one queue.
type Observer struct {
	proxywatch.ConnObserver
	proxywatch.LogObserver
}

// Levels are the four level names, in order.
var Levels = []string{"DEBUG", "INFO", "WARN", "ERROR"}

// LogCounter is a LogObserver that counts records by level and the Dropped
// counts they carried, and notes where it stood when each "mark ..." record
// arrived.
type LogCounter struct {
	mu       sync.Mutex
	levels   map[string]uint64
	received uint64
	dropped  uint64
	marks    map[string]Mark
}

// Mark is where a LogCounter stood when a mark record arrived: the mark's Seq,
// and the records received (the mark included) and told dropped until then.
type Mark struct {
	Seq, Received, Dropped uint64
}

// ObserveLog implements proxywatch.LogObserver.
func (l *LogCounter) ObserveLog(r proxywatch.LogRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.levels == nil {
		l.levels = map[string]uint64{}
		l.marks = map[string]Mark{}
	}
	l.levels[proxywatch.LevelName(r.Level)]++
	l.received++
	l.dropped += r.Dropped
	if r.Source == "app" && strings.HasPrefix(r.Message, "mark ") {
		l.marks[r.Message] = Mark{r.Seq, l.received, l.dropped}
	}
}

// Snapshot returns the counts by level (every level present), the records
// received, and the sum of their Dropped counts.
func (l *LogCounter) Snapshot() (levels map[string]uint64, received, dropped uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	levels = make(map[string]uint64, len(Levels))
	for _, name := range Levels {
		levels[name] = l.levels[name]
	}
	return levels, l.received, l.dropped
}

// WaitMark logs "mark 1", "mark 2"... through p's slog handler until one of
// them reaches l, and returns where l stood then. Records are delivered in the
// order they were queued, so everything queued before that mark had been
// delivered, or counted as dropped in it, when it arrived.
func (l *LogCounter) WaitMark(t testing.TB, p *proxywatch.Proxy) Mark {
	t.Helper()
	log := slog.New(p.SlogHandler())
	var m Mark
	i := 0
	WaitFor(t, "a mark record", func() bool {
		i++
		log.Info(fmt.Sprintf("mark %d", i))
		time.Sleep(time.Millisecond)
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, x := range l.marks {
			m = x
			return true
		}
		return false
	})
	return m
}

// Exchanges sends gets GETs to web+"/get", then posts POSTs of postSize bytes
// to web+"/post", through hc, and fails the test unless every response
// brings respSize bytes.
func Exchanges(t testing.TB, hc *http.Client, web string, gets, posts, postSize int, respSize int64) {
	t.Helper()
	for i := range gets + posts {
		var resp *http.Response
		var err error
		if i < gets {
			resp, err = hc.Get(web + "/get")
		} else {
			resp, err = hc.Post(web+"/post", "text/plain", strings.NewReader(strings.Repeat("u", postSize)))
		}
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != respSize {
			t.Fatalf("request %d: read %d bytes, %v", i, n, err)
		}
	}
}

// Get fetches target through hc, reads and closes the body, and returns the
// response for its status.
func Get(t testing.TB, hc *http.Client, target string) *http.Response {
	t.Helper()
	resp, err := hc.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// FailedConn returns the connection to host in p's History, and fails the
// test unless it is a plain HTTP one ended by an upstream error. What a
// failed request counts is the core's business, so tests take it from here.
func FailedConn(t testing.TB, p *proxywatch.Proxy, host string) proxywatch.ConnInfo {
	t.Helper()
	var errConn proxywatch.ConnInfo
	for _, ci := range p.History() {
		if ci.Host == host {
			errConn = ci
		}
	}
	if errConn.EndReason != proxywatch.EndUpstreamError || errConn.Protocol != proxywatch.ProtoHTTP {
		t.Fatalf("the failed request: %+v, want an HTTP connection ended by upstream error", errConn)
	}
	return errConn
}

// HotPath is the body of the exporters' BenchmarkHotPath. One plain-HTTP
// request loop goes, in the same run, through three Proxies: a bare one, one
// with an observer that does nothing (the cost of having events delivered at
// all, which any observer pays), and watched, which the caller gave its
// exporter; collect, when not nil, is called once per 1000 requests. The
// requests take turns, in rotating order, so that the machine's noise falls on
// all alike. It reports the median time per request through each, and the
// ratios exporter/bare and exporter/noop (1.00 means no cost). Medians,
// because a shared machine's pauses land on single requests and would swamp a
// mean.
func HotPath(b *testing.B, watched *proxywatch.Proxy, collect func() error) {
	web := Upstream(b, 1024)

	bare := proxywatch.New(nil)
	noop := proxywatch.New(nil)
	b.Cleanup(noop.Observe(Observer{
		ConnObserver: proxywatch.ConnObserverFunc(func(proxywatch.ConnEvent) {}),
		LogObserver:  proxywatch.LogObserverFunc(func(proxywatch.LogRecord) {}),
	}))

	clients := []*http.Client{
		Client(b, Serve(b, bare)),
		Client(b, Serve(b, noop)),
		Client(b, Serve(b, watched)),
	}
	get := func(hc *http.Client) time.Duration {
		start := time.Now()
		resp, err := hc.Get(web.URL)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start)
	}
	// Warm all up: keep-alive connections, goproxy's and the upstream's.
	for range 50 {
		for _, hc := range clients {
			get(hc)
		}
	}

	times := make([][]time.Duration, len(clients))
	for i := 0; b.Loop(); i++ {
		for k := range clients {
			j := (i + k) % len(clients)
			times[j] = append(times[j], get(clients[j]))
		}
		if i%1000 == 999 && collect != nil {
			if err := collect(); err != nil {
				b.Fatal(err)
			}
		}
	}
	mBare, mNoop, mWatched := median(times[0]), median(times[1]), median(times[2])
	b.ReportMetric(float64(mBare), "ns/req-bare")
	b.ReportMetric(float64(mNoop), "ns/req-noop")
	b.ReportMetric(float64(mWatched), "ns/req-exporter")
	b.ReportMetric(float64(mWatched)/float64(mBare), "exporter/bare")
	b.ReportMetric(float64(mWatched)/float64(mNoop), "exporter/noop")
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// WaitDropsMark is WaitMark for a test that made l miss records: it fails
// the test unless some were told dropped by the mark, and the records
// received and told dropped add up to the mark's Seq.
func (l *LogCounter) WaitDropsMark(t testing.TB, p *proxywatch.Proxy) {
	t.Helper()
	m := l.WaitMark(t, p)
	if m.Dropped == 0 || m.Received+m.Dropped != m.Seq {
		t.Errorf("at the mark: received %d, told of %d dropped, Seq %d: want received+dropped = Seq, and some dropped", m.Received, m.Dropped, m.Seq)
	}
}
