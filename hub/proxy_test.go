package hub_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
	"go.uber.org/goleak"
)

// These tests run a real Proxy carrying real traffic from real HTTP clients to
// httptest upstreams, all on loopback.

// startHub serves a Hub of p behind an httptest server until the test ends.
func startHub(t *testing.T, p *proxywatch.Proxy, opts *hub.Options) (*hub.Hub, *httptest.Server) {
	t.Helper()
	opts.Token = "s3cret"
	h := hub.New(p, opts)
	return h, serve(t, h)
}

// transfer downloads url through the proxy until it fails, and returns the
// error the client saw.
func transfer(t *testing.T, proxy *url.URL, target string, roots *x509.CertPool) <-chan error {
	tr := &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	errc := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get(target)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				err = errNoError
			}
		}
		errc <- err
	}()
	return errc
}

// TestCloseActionsEndTransfers closes in-flight transfers through the socket:
// one by id, then the rest with closeAllConnections. Each client sees an
// error, and the live set, as pushed, empties.
func TestCloseActionsEndTransfers(t *testing.T) {
	plain := streamServer(false)
	defer plain.Close()
	secure := streamServer(true)
	defer secure.Close()
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())

	p, pu := startProxy(t)
	_, srv := startHub(t, p, &hub.Options{ConnectionsInterval: 30 * time.Millisecond, TrafficInterval: time.Hour})
	c, _ := dial(t, srv)
	c.subscribe(hub.Request{Topics: []string{"connections", "events"}})

	errs := map[string]<-chan error{
		"plain1": transfer(t, pu, plain.URL+"/one", nil),
		"plain2": transfer(t, pu, plain.URL+"/two", nil),
		"tunnel": transfer(t, pu, secure.URL+"/three", roots),
	}
	// Wait until the pushed list shows all three moving bytes.
	ids := map[string]proxywatch.ConnID{}
	for len(ids) < 3 {
		var conns []hub.Conn
		c.skipUntil(hub.TypeConnections, &conns)
		clear(ids)
		for _, cn := range conns {
			switch {
			case cn.Down == 0:
			case cn.Protocol == proxywatch.ProtoTunnel:
				ids["tunnel"] = cn.ID
			case cn.URL == plain.URL+"/one":
				ids["plain1"] = cn.ID
			case cn.URL == plain.URL+"/two":
				ids["plain2"] = cn.ID
			}
		}
	}

	// until reads up to the next frame of type typ, noting closed events.
	closedEvents := map[proxywatch.ConnID]bool{}
	until := func(typ string, data any) hub.Message {
		t.Helper()
		for {
			m, raw := c.next()
			if m.Type == hub.TypeEvent {
				var ev hub.Event
				json.Unmarshal(m.Data, &ev)
				if ev.Event == "closed" {
					if ev.Conn.EndReason != proxywatch.EndClosedByAPI || ev.Conn.End.IsZero() || ev.Conn.Down == 0 {
						t.Errorf("closed event %s", raw)
					}
					closedEvents[ev.Conn.ID] = true
				}
			}
			if m.Type == typ {
				json.Unmarshal(m.Data, data)
				return m
			}
		}
	}

	c.send(hub.Request{Action: hub.ActionCloseConnection, ID: ids["plain1"], Ref: json.RawMessage(`"by-id"`)})
	var res hub.Result
	m := until(hub.TypeResult, &res)
	if string(m.Ref) != `"by-id"` || res.Closed != 1 || !slices.Equal(res.IDs, []proxywatch.ConnID{ids["plain1"]}) {
		t.Fatalf("closeConnection result %+v, ref %s", res, m.Ref)
	}
	if err := <-errs["plain1"]; err == errNoError {
		t.Fatal("plain1: " + err.Error())
	} else {
		t.Logf("plain1 client saw: %v", err)
	}
	select {
	case err := <-errs["plain2"]:
		t.Fatalf("plain2 ended too when only plain1 was closed: %v", err)
	default:
	}

	c.sendRaw(`{"action":"closeAllConnections"}`)
	until(hub.TypeResult, &res)
	want := []proxywatch.ConnID{ids["plain2"], ids["tunnel"]}
	slices.Sort(want)
	slices.Sort(res.IDs)
	if res.Action != hub.ActionCloseAll || res.Closed != 2 || !slices.Equal(res.IDs, want) {
		t.Fatalf("closeAllConnections result %+v, want ids %v", res, want)
	}
	for _, name := range []string{"plain2", "tunnel"} {
		if err := <-errs[name]; err == errNoError {
			t.Fatalf("%s: %v", name, err)
		} else {
			t.Logf("%s client saw: %v", name, err)
		}
	}
	if live := p.Connections(); len(live) != 0 {
		t.Fatalf("live set after closeAll: %+v", live)
	}
	// The pushed list empties, and every close is announced as an event.
	for {
		var conns []hub.Conn
		until(hub.TypeConnections, &conns)
		if len(conns) == 0 && len(closedEvents) == 3 {
			break
		}
	}
	for name, id := range ids {
		if !closedEvents[id] {
			t.Errorf("no closed event for %s (%d)", name, id)
		}
	}
}

// TestResumeLogsBySeq disconnects a log subscriber mid-stream, lets the proxy
// log more, and reconnects with since: the records continue exactly where
// they stopped, with no gap and no duplicate.
func TestResumeLogsBySeq(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	p, pu := startProxy(t)
	h, srv := startHub(t, p, &hub.Options{LogBacklog: 5000})
	get := func(n int) {
		tr := &http.Transport{Proxy: http.ProxyURL(pu)}
		defer tr.CloseIdleConnections()
		for i := range n {
			resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("%s/req%d", up.URL, i))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	a, _ := dial(t, srv)
	a.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "DEBUG"})
	get(5)
	var last uint64
	for last < 5 { // the proxy logs more than one line per request
		var l hub.Log
		a.skipUntil(hub.TypeLog, &l)
		if l.Seq != last+1 {
			t.Fatalf("first connection: seq %d after %d", l.Seq, last)
		}
		last = l.Seq
	}
	// Another client keeps watching at DEBUG while the first one is away, so
	// the proxy keeps making DEBUG records and the hub keeps them.
	keeper, _ := dial(t, srv)
	keeper.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "DEBUG"})
	a.conn.Close()
	waitFor(t, "the first client to leave", func() bool { return h.Clients() == 1 })
	if h.Level() != slog.LevelDebug {
		t.Fatalf("Level %v with a DEBUG subscriber", h.Level())
	}

	before := p.Stats().Logs
	get(5)
	var hello hub.Hello
	var b *client
	for hello.LogSeq <= before { // until the hub has seen the new records
		b, hello = dial(t, srv)
		if hello.LogSeq <= before {
			b.conn.Close()
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.send(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"logs"}, LogLevel: "DEBUG", Since: ptr(last)})
	b.skipUntil(hub.TypeSubscribed, nil)
	for last < hello.LogSeq {
		m, raw := b.next()
		if m.Type != hub.TypeLog {
			t.Fatalf("unexpected %s", raw)
		}
		var l hub.Log
		json.Unmarshal(m.Data, &l)
		if l.Seq != last+1 {
			t.Fatalf("resumed with seq %d after %d", l.Seq, last)
		}
		if l.Source != "goproxy" && l.Source != "http" && l.Source != "app" {
			t.Errorf("log source %q: %s", l.Source, raw)
		}
		last = l.Seq
	}

	// With nobody at DEBUG the proxy makes no DEBUG record at all; a client
	// that switches to DEBUG gets them live from its subscribed answer on.
	keeper.conn.Close()
	b.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "INFO"})
	waitFor(t, "Level back to INFO", func() bool { return h.Level() == slog.LevelInfo && h.Clients() == 1 })
	before = p.Stats().Logs
	get(3)
	if n := p.Stats().Logs; n != before {
		t.Fatalf("%d log records made for 3 requests with no DEBUG subscriber", n-before)
	}
	b.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "DEBUG"})
	get(1)
	var l hub.Log
	for l.Seq <= before { // records made earlier may still be on their way to the hub
		b.skipUntil(hub.TypeLog, &l)
	}
	if l.Level != "DEBUG" || l.Seq != before+1 {
		t.Fatalf("after switching to DEBUG: %+v, want DEBUG seq %d", l, before+1)
	}
}

// TestNeverReadingClientDropped pushes real traffic and connection lists to a
// client that never reads and to one that does: the first is dropped, the
// second misses no tick (the traffic deltas it got add up to the totals).
func TestNeverReadingClientDropped(t *testing.T) {
	plain := streamServer(false)
	defer plain.Close()
	p, pu := startProxy(t)
	h := hub.New(p, &hub.Options{Token: "s3cret", TrafficInterval: 20 * time.Millisecond,
		ConnectionsInterval: 20 * time.Millisecond, SendQueue: 16, WriteWait: time.Minute})
	// Small socket buffers, so that the stalled client fills its queue after
	// a few ticks instead of after megabytes of kernel buffering.
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	var transfers []<-chan error
	for i := range 20 {
		transfers = append(transfers, transfer(t, pu, fmt.Sprintf("%s/stream/%d", plain.URL, i), nil))
	}
	waitFor(t, "20 live transfers", func() bool { return len(p.Connections()) == 20 })

	stalled, _, err := websocket.DefaultDialer.Dial(wsURL(srv, "?token=s3cret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.NetConn().(*net.TCPConn).SetReadBuffer(4096)
	stalled.WriteJSON(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"traffic", "connections"}})

	good, _ := dial(t, srv)
	good.subscribe(hub.Request{Topics: []string{"traffic", "connections"}})
	var first, lastTick hub.Traffic
	var sumUp, sumDown uint64
	var maxInterval int64
	ticks := 0
	droppedAt := -1
	for droppedAt < 0 || ticks < droppedAt+10 {
		var tr hub.Traffic
		good.skipUntil(hub.TypeTraffic, &tr)
		if ticks == 0 {
			first = tr
		}
		ticks++
		sumUp += tr.Up
		sumDown += tr.Down
		maxInterval = max(maxInterval, tr.Interval)
		lastTick = tr
		if droppedAt < 0 && h.Clients() == 1 {
			droppedAt = ticks
		}
		if droppedAt < 0 && ticks > 20000 {
			t.Fatal("the stalled client was never dropped")
		}
	}
	// Every tick reached the good client: the deltas add up to the totals.
	if sumUp != lastTick.UpTotal-first.UpTotal+first.Up || sumDown != lastTick.DownTotal-first.DownTotal+first.Down {
		t.Fatalf("deltas %d/%d over %d ticks do not add up to the totals %+v .. %+v", sumUp, sumDown, ticks, first, lastTick)
	}
	if lastTick.Live != 20 || sumDown == 0 {
		t.Fatalf("last tick %+v: want 20 live connections moving bytes", lastTick)
	}
	t.Logf("good client: %d ticks, %d of them after the stalled client was dropped at tick %d; longest interval %d ms (nominal 20)",
		ticks, ticks-droppedAt, droppedAt, maxInterval)
	p.CloseAll()
	for _, errc := range transfers {
		<-errc
	}
}

// smallBufListener gives accepted connections a small send buffer.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// TestCloseLeavesNoGoroutine runs a Hub over a Proxy with traffic and
// clients, closes everything and checks that no goroutine is left.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	plain := streamServer(false)
	p := proxywatch.New(&proxywatch.Options{SampleInterval: 20 * time.Millisecond})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(l) }()
	h := hub.New(p, &hub.Options{Token: "s3cret", TrafficInterval: 10 * time.Millisecond, ConnectionsInterval: 10 * time.Millisecond})
	srv := httptest.NewServer(h)

	var conns []*websocket.Conn
	for _, topics := range [][]string{{"traffic"}, {"connections", "events"}, {"logs"}, nil} {
		c, _, err := websocket.DefaultDialer.Dial(wsURL(srv, "?token=s3cret"), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.WriteJSON(hub.Request{Action: hub.ActionSubscribe, Topics: topics, LogLevel: "DEBUG"})
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	for _, c := range conns { // readers until the hub closes them
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: l.Addr().String()})}
	resp, err := (&http.Client{Transport: tr}).Get(plain.URL)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for n := 0; n < 256<<10; {
		k, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		n += k
	}

	h.Close()
	wg.Wait()
	p.Close()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	for _, c := range conns {
		c.Close()
	}
	srv.Close()
	plain.Close()
}
