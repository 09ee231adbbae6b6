package hub_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
	"github.com/proxywatch/proxywatch/internal/version"
)

var levels = []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}

func record(seq uint64, level slog.Level, msg string) proxywatch.LogRecord {
	return proxywatch.LogRecord{
		Seq: seq, Time: time.Date(2026, 11, 27, 10, 30, 45, 123456789, time.UTC),
		Level: level, Message: msg, Source: "goproxy", Session: int64(seq % 1000), Conn: proxywatch.ConnID(seq),
	}
}

func TestAuth(t *testing.T) {
	_, srv := setup(t, &memSource{}, nil)
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
		want   int
	}{
		{"no token", "", nil, http.StatusUnauthorized},
		{"wrong token", "?token=s3creT", nil, http.StatusUnauthorized},
		{"prefix of token", "?token=s3cre", nil, http.StatusUnauthorized},
		{"token twice", "?token=s3cret&token=s3cret", nil, http.StatusUnauthorized},
		{"wrong bearer", "", http.Header{"Authorization": {"Bearer nope"}}, http.StatusUnauthorized},
		{"basic instead of bearer", "", http.Header{"Authorization": {"Basic s3cret"}}, http.StatusUnauthorized},
		{"wrong token beats a right bearer", "?token=nope", http.Header{"Authorization": {"Bearer s3cret"}}, http.StatusUnauthorized},
		{"query token", "?token=s3cret", nil, http.StatusSwitchingProtocols},
		{"bearer", "", http.Header{"Authorization": {"Bearer s3cret"}}, http.StatusSwitchingProtocols},
		{"bearer, any case", "", http.Header{"Authorization": {"bearer s3cret"}}, http.StatusSwitchingProtocols},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, tc.query), tc.header)
			if conn != nil {
				conn.Close()
			}
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d (err %v)", resp.StatusCode, tc.want, err)
			}
			if tc.want != http.StatusUnauthorized {
				return
			}
			body, _ := io.ReadAll(resp.Body)
			if strings.TrimSpace(string(body)) != "unauthorized" {
				t.Errorf("body %q", body)
			}
			if resp.Header.Get("Upgrade") != "" || resp.Header.Get("Sec-Websocket-Accept") != "" {
				t.Errorf("401 carries upgrade headers: %v", resp.Header)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestPlainGETIsNotUpgraded(t *testing.T) {
	h, srv := setup(t, &memSource{}, nil)
	resp, err := http.Get(srv.URL + "/start?token=s3cret")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || h.Clients() != 0 {
		t.Fatalf("plain GET: %s, %d clients", resp.Status, h.Clients())
	}
}

func TestGeneratedToken(t *testing.T) {
	a := hub.NewWithSource(&memSource{}, nil)
	defer a.Close()
	b := hub.NewWithSource(&memSource{}, &hub.Options{})
	defer b.Close()
	hex128 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	if !hex128.MatchString(a.Token()) || !hex128.MatchString(b.Token()) || a.Token() == b.Token() {
		t.Fatalf("tokens %q and %q: want two different random 128-bit hex secrets", a.Token(), b.Token())
	}
	srv := serve(t, a)
	dialURL(t, wsURL(srv, "?token="+a.Token()), nil).nextData(hub.TypeHello, nil)
	if _, resp, _ := websocket.DefaultDialer.Dial(wsURL(srv, "?token="), nil); resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatal("an empty token was accepted")
	}
}

func TestOrigin(t *testing.T) {
	_, srv := setup(t, &memSource{}, &hub.Options{AllowedOrigins: []string{"http://localhost:5173", "null"}})
	self := "http://" + srv.Listener.Addr().String()
	for _, tc := range []struct {
		name, origin, query string
		want                int
	}{
		{"no origin (not a browser)", "", "?token=s3cret", http.StatusSwitchingProtocols},
		{"same origin", self, "?token=s3cret", http.StatusSwitchingProtocols},
		{"same origin, upper case", strings.ToUpper(self), "?token=s3cret", http.StatusSwitchingProtocols},
		{"allowed origin", "http://localhost:5173", "?token=s3cret", http.StatusSwitchingProtocols},
		{"foreign origin", "http://evil.example", "?token=s3cret", http.StatusForbidden},
		{"same host, other port", "http://127.0.0.1:1", "?token=s3cret", http.StatusForbidden},
		{"allowed host, other scheme", "https://localhost:5173", "?token=s3cret", http.StatusForbidden},
		{"null, even when listed", "null", "?token=s3cret", http.StatusForbidden},
		{"foreign origin without token", "http://evil.example", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := http.Header{}
			if tc.origin != "" {
				header.Set("Origin", tc.origin)
			}
			conn, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, tc.query), header)
			if conn != nil {
				conn.Close()
			}
			if resp == nil || resp.StatusCode != tc.want {
				t.Fatalf("response %v, err %v; want status %d", resp, err, tc.want)
			}
		})
	}
}

func TestMaxClients(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{MaxClients: 2})
	a, _ := dial(t, srv)
	dial(t, srv)
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, "?token=s3cret"), nil)
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third client: %v, %v; want 503", resp, err)
	}
	a.conn.Close()
	waitFor(t, "the first client to leave", func() bool { return h.Clients() == 1 })
	dial(t, srv)
	if n := h.Clients(); n != 2 {
		t.Fatalf("Clients() = %d, want 2", n)
	}
}

func TestHello(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{
		TrafficInterval: 1500 * time.Millisecond, ConnectionsInterval: 3 * time.Second, EventInterval: 250 * time.Millisecond,
		LogBacklog: 50, MaxMessageBytes: 4096,
	})
	for i := uint64(1); i <= 7; i++ {
		h.ObserveLog(record(i, slog.LevelInfo, "x"))
	}
	c := dialURL(t, wsURL(srv, "?token=s3cret"), nil)
	m, raw := c.next()
	if m.Type != hub.TypeHello {
		t.Fatalf("first frame %s, want hello", raw)
	}
	var got hub.Hello
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	want := hub.Hello{
		Protocol: 1, Server: version.String(),
		Intervals: hub.Intervals{Traffic: 1500, Connections: 3000, Events: 250},
		Topics:    []string{"traffic", "connections", "logs", "events", "eventBatches", "connectionsDelta"},
		Actions:   []string{"subscribe", "closeAllConnections", "closeConnection", "closeConnections", "getHistory"},
		LogSeq:    7, LogBacklog: 50, MaxMessageBytes: 4096,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hello %+v\nwant  %+v", got, want)
	}
	// Nothing is pushed before a subscribe: the next frame answers one.
	c.send(hub.Request{Action: "getHistory", Ref: json.RawMessage(`"h"`)})
	if m, raw := c.next(); m.Type != hub.TypeHistory {
		t.Fatalf("got %s before any subscribe", raw)
	}
}

// TestSeedShapes checks the frames a client written against the seed protocol
// relies on, key by key and type by type.
func TestSeedShapes(t *testing.T) {
	src := &memSource{}
	src.setConns([]proxywatch.ConnInfo{{
		ID: 1, Method: "GET", Host: "example.com", URL: "/api", Client: "127.0.0.1:12345",
		Protocol: proxywatch.ProtoHTTPSMITM, Up: 1234, Down: 5678, Start: time.Now(), Parent: 0,
	}})
	h, srv := setup(t, src, &hub.Options{TrafficInterval: 10 * time.Millisecond, ConnectionsInterval: 10 * time.Millisecond})
	c, _ := dial(t, srv)
	c.sendRaw(`{"action": "subscribe", "topics": ["traffic", "connections", "logs"], "logLevel": "INFO"}`)
	c.skipUntil(hub.TypeSubscribed, nil)
	h.ObserveLog(record(1, slog.LevelInfo, "hello from goproxy"))

	seedKeys := map[string]map[string]string{
		"traffic":     {"up": "number", "down": "number"},
		"connections": {"id": "number", "method": "string", "host": "string", "url": "string", "remote": "string", "protocol": "string", "up": "number", "down": "number"},
		"log":         {"level": "string", "session": "number", "message": "string", "time": "string"},
	}
	seen := map[string]bool{}
	for len(seen) < len(seedKeys) {
		_, raw := c.next()
		var frame struct {
			Type string `json:"type"`
			Data any    `json:"data"`
		}
		if err := json.Unmarshal(raw, &frame); err != nil {
			t.Fatal(err)
		}
		keys, ok := seedKeys[frame.Type]
		if !ok {
			t.Fatalf("unexpected frame %s", raw)
		}
		seen[frame.Type] = true
		obj, isObj := frame.Data.(map[string]any)
		if frame.Type == "connections" {
			list, isList := frame.Data.([]any)
			if !isList || len(list) != 1 {
				t.Fatalf("connections data is not a one-entry array: %s", raw)
			}
			obj, isObj = list[0].(map[string]any)
		}
		if !isObj {
			t.Fatalf("data is not an object: %s", raw)
		}
		for k, typ := range keys {
			switch obj[k].(type) {
			case float64:
				if typ != "number" {
					t.Errorf("%s.%s is a number, want %s: %s", frame.Type, k, typ, raw)
				}
			case string:
				if typ != "string" {
					t.Errorf("%s.%s is a string, want %s: %s", frame.Type, k, typ, raw)
				}
			default:
				t.Errorf("%s.%s missing or not a %s: %s", frame.Type, k, typ, raw)
			}
		}
		if frame.Type == "log" {
			if _, err := time.Parse(time.RFC3339Nano, obj["time"].(string)); err != nil || obj["level"] != "INFO" || obj["message"] != "hello from goproxy" {
				t.Errorf("log frame %s", raw)
			}
		}
		if frame.Type == "connections" && (obj["id"] != 1.0 || obj["url"] != "/api" || obj["remote"] != "127.0.0.1:12345" || obj["protocol"] != "HTTPS-MITM") {
			t.Errorf("connections frame %s", raw)
		}
	}

	// No live connection: the data is an empty array, never null.
	src.setConns(nil)
	for {
		m, raw := c.next()
		if m.Type != hub.TypeConnections || strings.Contains(string(raw), `"id":1`) {
			continue // a list taken before setConns
		}
		if !strings.Contains(string(raw), `"data":[]`) {
			t.Fatalf("empty connections frame %s", raw)
		}
		break
	}
}

func TestConnectionsAtOnceOnSubscribe(t *testing.T) {
	src := &memSource{}
	src.setConns([]proxywatch.ConnInfo{{ID: 3, Host: "a:1"}, {ID: 5, Host: "b:2"}})
	_, srv := setup(t, src, &hub.Options{ConnectionsInterval: time.Hour})
	c, _ := dial(t, srv)
	c.subscribe(hub.Request{Topics: []string{"connections"}})
	var conns []hub.Conn
	c.nextData(hub.TypeConnections, &conns)
	if len(conns) != 2 || conns[0].ID != 3 || conns[1].ID != 5 {
		t.Fatalf("first list %+v", conns)
	}
	// Already subscribed: no extra list; the next frame answers getHistory.
	c.subscribe(hub.Request{Topics: []string{"connections", "logs"}})
	c.send(hub.Request{Action: hub.ActionGetHistory})
	c.nextData(hub.TypeHistory, nil)
}

func TestTrafficDeltas(t *testing.T) {
	src := &memSource{}
	src.setTotals(1000, 5000, 0)
	_, srv := setup(t, src, &hub.Options{TrafficInterval: 20 * time.Millisecond, ConnectionsInterval: time.Hour})
	c, _ := dial(t, srv)
	c.subscribe(hub.Request{Topics: []string{"traffic"}})
	src.setTotals(1000+300, 5000+7000, 3)
	var sumUp, sumDown uint64
	for sumUp < 300 || sumDown < 7000 {
		var tr hub.Traffic
		c.skipUntil(hub.TypeTraffic, &tr)
		if tr.Interval <= 0 {
			t.Errorf("interval %d ms", tr.Interval)
		}
		sumUp += tr.Up
		sumDown += tr.Down
		if tr.Up+tr.Down > 0 && (tr.UpTotal != 1300 || tr.DownTotal != 12000 || tr.Live != 3) {
			t.Errorf("traffic %+v: want totals 1300/12000 and live 3", tr)
		}
	}
	if sumUp != 300 || sumDown != 7000 {
		t.Fatalf("deltas sum to %d/%d, want 300/7000", sumUp, sumDown)
	}
}

// TestManyClients runs 50 clients with different subscriptions at once and
// checks that each gets exactly what it asked for: its log levels in order
// without gap or duplicate, its events, its ticks, and nothing else.
func TestManyClients(t *testing.T) {
	src := &memSource{}
	src.setConns([]proxywatch.ConnInfo{{ID: 9, Host: "a:80", Start: time.Now()}})
	h, srv := setup(t, src, &hub.Options{
		TrafficInterval: 15 * time.Millisecond, ConnectionsInterval: 25 * time.Millisecond,
		SendQueue: 4096, // the clients read only once everything is fed
	})
	typeTopic := map[string]string{"traffic": "traffic", "connections": "connections", "log": "logs", "event": "events"}

	const nClients, nRecords, nConns = 50, 120, 10
	type want struct {
		topics []string
		level  slog.Level
	}
	wants := make([]want, nClients)
	clients := make([]*client, nClients)
	for i := range clients {
		var topics []string
		for bit, topic := range []string{"traffic", "connections", "logs", "events"} {
			if (i+1)&(1<<bit) != 0 {
				topics = append(topics, topic)
			}
		}
		wants[i] = want{topics, levels[i%4]}
		clients[i], _ = dial(t, srv)
		got := clients[i].subscribe(hub.Request{Topics: append(topics, "bogus"), LogLevel: proxywatch.LevelName(levels[i%4])})
		if !slices.Equal(got.Topics, topics) {
			t.Fatalf("client %d: subscribed to %v, want %v", i, got.Topics, topics)
		}
	}

	var feed sync.WaitGroup
	feed.Add(2)
	go func() {
		defer feed.Done()
		for i := uint64(1); i <= nRecords; i++ {
			h.ObserveLog(record(i, levels[i%4], fmt.Sprint("record ", i)))
		}
	}()
	go func() {
		defer feed.Done()
		for i := 1; i <= nConns; i++ {
			ci := proxywatch.ConnInfo{ID: proxywatch.ConnID(100 + i), Host: "h:443", Start: time.Now()}
			h.ObserveConn(proxywatch.ConnEvent{State: proxywatch.ConnOpened, Conn: ci})
			ci.End, ci.EndReason, ci.Down = time.Now(), proxywatch.EndCompleted, uint64(i)
			h.ObserveConn(proxywatch.ConnEvent{State: proxywatch.ConnClosed, Conn: ci})
		}
	}()
	feed.Wait()

	var run sync.WaitGroup
	for i, c := range clients {
		run.Add(1)
		go func() {
			defer run.Done()
			c.send(hub.Request{Action: "getHistory", Ref: json.RawMessage(`"end"`)})
			w := wants[i]
			has := func(topic string) bool { return slices.Contains(w.topics, topic) }
			var seqs []uint64
			var events []string
			counts := map[string]int{}
			ended := false
			// Read until the end marker and, for tick subscribers, at least
			// one tick of each kind after it.
			for !ended || (has("traffic") && counts["traffic"] == 0) || (has("connections") && counts["connections"] == 0) {
				m, raw, err := c.read()
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				switch m.Type {
				case hub.TypeHistory:
					ended = true
				case hub.TypeLog:
					var l hub.Log
					json.Unmarshal(m.Data, &l)
					seqs = append(seqs, l.Seq)
				case hub.TypeEvent:
					var e hub.Event
					json.Unmarshal(m.Data, &e)
					events = append(events, fmt.Sprint(e.Event, e.Conn.ID))
				case hub.TypeTraffic, hub.TypeConnections:
					if ended {
						counts[m.Type]++
					}
				default:
					t.Errorf("client %d: unexpected %s", i, raw)
				}
				if topic, ok := typeTopic[m.Type]; ok && !has(topic) {
					t.Errorf("client %d (topics %v) got %s", i, w.topics, m.Type)
				}
			}
			var wantSeqs []uint64
			var wantEvents []string
			if has("logs") {
				for s := uint64(1); s <= nRecords; s++ {
					if levels[s%4] >= w.level {
						wantSeqs = append(wantSeqs, s)
					}
				}
			}
			if has("events") {
				for id := 101; id <= 100+nConns; id++ {
					wantEvents = append(wantEvents, fmt.Sprint("opened", id), fmt.Sprint("closed", id))
				}
			}
			if !slices.Equal(seqs, wantSeqs) {
				t.Errorf("client %d (topics %v, level %v): log seqs %v, want %v", i, w.topics, w.level, seqs, wantSeqs)
			}
			if !slices.Equal(events, wantEvents) {
				t.Errorf("client %d: events %v, want %v", i, events, wantEvents)
			}
		}()
	}
	run.Wait()
}

// TestLevelChange checks that a new level applies from the subscribed answer
// on, exactly, while records keep flowing.
func TestLevelChange(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{SendQueue: 1024}) // read only after the feed
	c, _ := dial(t, srv)
	c.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "DEBUG"})

	const n = 400
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(1); i <= n; i++ {
			h.ObserveLog(record(i, levels[i%4], "m"))
		}
	}()
	c.send(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"logs"}, LogLevel: "warning"})
	<-done
	c.send(hub.Request{Action: hub.ActionGetHistory})

	level := slog.LevelDebug
	var last uint64
	var switched bool
	for {
		m, raw := c.next()
		switch m.Type {
		case hub.TypeSubscribed:
			var s hub.Subscribed
			json.Unmarshal(m.Data, &s)
			if s.LogLevel != "WARN" {
				t.Fatalf("subscribed %s", raw)
			}
			level, switched = slog.LevelWarn, true
			continue
		case hub.TypeHistory:
			if !switched {
				t.Fatal("no subscribed answer")
			}
			// Every record was seen once at the level in force.
			for s := last + 1; s <= n; s++ {
				if levels[s%4] >= level {
					t.Fatalf("record %d at %v missing after %d", s, levels[s%4], last)
				}
			}
			return
		case hub.TypeLog:
		default:
			t.Fatalf("unexpected %s", raw)
		}
		var l hub.Log
		json.Unmarshal(m.Data, &l)
		for s := last + 1; s < l.Seq; s++ {
			if levels[s%4] >= level {
				t.Fatalf("record %d (%v) skipped at level %v", s, levels[s%4], level)
			}
		}
		if l.Seq <= last || levels[l.Seq%4] < level {
			t.Fatalf("record %d (%s) after %d at level %v", l.Seq, l.Level, last, level)
		}
		last = l.Seq
	}
}

// readReplay collects the log seqs (0 where a logsDropped came) and drop
// counts that a subscription answer and its replay carried.
func readReplay(t *testing.T, c *client) (seqs []uint64, dropped []uint64) {
	t.Helper()
	c.send(hub.Request{Action: hub.ActionGetHistory}) // marks the end of the replay
	for {
		m, raw := c.next()
		switch m.Type {
		case hub.TypeLog:
			var l hub.Log
			json.Unmarshal(m.Data, &l)
			seqs = append(seqs, l.Seq)
		case hub.TypeLogsDropped:
			var d hub.LogsDropped
			json.Unmarshal(m.Data, &d)
			dropped = append(dropped, d.Count)
			seqs = append(seqs, 0) // where the gap was announced
		case hub.TypeHistory:
			return seqs, dropped
		case hub.TypeSubscribed:
		default:
			t.Fatalf("unexpected %s", raw)
		}
	}
}

func seqRange(from, to uint64, keep func(uint64) bool) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		if keep == nil || keep(i) {
			s = append(s, i)
		}
	}
	return s
}

// replayCase is a subscribe with since and level, and the log seqs
// (0 for a logsDropped message) and drop counts it must replay.
type replayCase struct {
	name        string
	since       *uint64
	level       string
	wantSeqs    []uint64
	wantDropped []uint64
}

// check subscribes c to logs as tc says and compares what it replays.
func (tc replayCase) check(t *testing.T, c *client) {
	t.Helper()
	c.send(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"logs"}, LogLevel: tc.level, Since: tc.since})
	seqs, dropped := readReplay(t, c)
	if !slices.Equal(seqs, tc.wantSeqs) || !slices.Equal(dropped, tc.wantDropped) {
		t.Fatalf("replayed %v, dropped %v\nwant     %v, dropped %v", seqs, dropped, tc.wantSeqs, tc.wantDropped)
	}
}

// TestLogBacklogReplay feeds 300 records of every level while a client
// watches at DEBUG, so that every level is kept, and checks what later
// subscribers get replayed.
func TestLogBacklogReplay(t *testing.T) {
	// The watcher does not read during the test: its queue holds all 300.
	h, srv := setup(t, &memSource{}, &hub.Options{LogBacklog: 200, SendQueue: 1024})
	watcher, _ := dial(t, srv)
	watcher.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "DEBUG"})
	for i := uint64(1); i <= 300; i++ {
		h.ObserveLog(record(i, levels[i%4], "m"))
	}
	if h.Level() != slog.LevelDebug || h.Clients() != 1 {
		t.Fatalf("Level %v, %d clients; want DEBUG, the watcher", h.Level(), h.Clients())
	}
	errorsOnly := func(s uint64) bool { return levels[s%4] == slog.LevelError }
	for _, tc := range []replayCase{
		{"no since: the backlog", nil, "DEBUG", seqRange(101, 300, nil), nil},
		{"no since, level ERROR", nil, "ERROR", seqRange(101, 300, errorsOnly), nil},
		{"since inside the backlog", ptr[uint64](250), "DEBUG", seqRange(251, 300, nil), nil},
		{"since the newest: nothing", ptr[uint64](300), "DEBUG", nil, nil},
		{"since older than the backlog", ptr[uint64](50), "DEBUG", append([]uint64{0}, seqRange(101, 300, nil)...), []uint64{50}},
		{"since 0: everything, gap first", ptr[uint64](0), "ERROR", append([]uint64{0}, seqRange(101, 300, errorsOnly)...), []uint64{100}},
		{"since from an earlier server", ptr[uint64](9999), "DEBUG", seqRange(101, 300, nil), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, hello := dial(t, srv)
			if hello.LogSeq != 300 || hello.LogBacklog != 200 {
				t.Fatalf("hello logSeq %d, logBacklog %d", hello.LogSeq, hello.LogBacklog)
			}
			tc.check(t, c)
		})
	}

	t.Run("no replay on a level change", func(t *testing.T) {
		c, _ := dial(t, srv)
		c.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "ERROR", Since: ptr[uint64](300)})
		c.send(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"logs"}, LogLevel: "DEBUG"})
		if seqs, dropped := readReplay(t, c); len(seqs)+len(dropped) > 0 {
			t.Fatalf("replayed %v, dropped %v on a level change", seqs, dropped)
		}
	})
}

// TestLogBacklogWithoutDebugSubscriber feeds the same 300 records with no
// client at DEBUG: the DEBUG ones are neither kept nor counted as lost, and
// the backlog holds the latest 200 records at INFO and above.
func TestLogBacklogWithoutDebugSubscriber(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{LogBacklog: 200, SendQueue: 1024})
	watcher, _ := dial(t, srv)
	watcher.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "INFO"})
	if h.Level() != slog.LevelInfo {
		t.Fatalf("Level %v with an INFO subscriber", h.Level())
	}
	for i := uint64(1); i <= 300; i++ {
		h.ObserveLog(record(i, levels[i%4], "m"))
	}
	// 225 records are INFO or above; the first 25 of them (seqs 1 to 33,
	// less the DEBUG 4, 8 ... 32) were evicted, so 34 is the oldest held.
	infoUp := func(s uint64) bool { return levels[s%4] >= slog.LevelInfo }
	errorsOnly := func(s uint64) bool { return levels[s%4] == slog.LevelError }
	for _, tc := range []replayCase{
		{"no since, DEBUG: INFO and above", nil, "DEBUG", seqRange(34, 300, infoUp), nil},
		{"no since, level ERROR", nil, "ERROR", seqRange(34, 300, errorsOnly), nil},
		{"since inside the backlog: no gap for the DEBUG seqs", ptr[uint64](250), "DEBUG", seqRange(251, 300, infoUp), nil},
		{"since the newest: nothing", ptr[uint64](300), "DEBUG", nil, nil},
		{"since older than the backlog: an upper bound", ptr[uint64](20), "DEBUG", append([]uint64{0}, seqRange(34, 300, infoUp)...), []uint64{13}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dial(t, srv)
			tc.check(t, c)
			c.conn.Close()
			waitFor(t, "the client to leave", func() bool { return h.Clients() == 1 })
			if h.Level() != slog.LevelInfo {
				t.Fatalf("Level %v after the DEBUG client left", h.Level())
			}
		})
	}
}

// TestLevelFollowsSubscribers checks Level: the lowest level of any logs
// subscriber, never above INFO, updated on subscribe and when a client goes.
func TestLevelFollowsSubscribers(t *testing.T) {
	h, srv := setup(t, &memSource{}, nil)
	want := func(l slog.Level) {
		t.Helper()
		waitFor(t, fmt.Sprintf("Level %v", l), func() bool { return h.Level() == l })
	}
	want(slog.LevelInfo)
	a, _ := dial(t, srv)
	a.subscribe(hub.Request{Topics: []string{"traffic"}, LogLevel: "DEBUG"}) // not a logs subscriber
	want(slog.LevelInfo)
	a.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "DEBUG"})
	want(slog.LevelDebug)
	b, _ := dial(t, srv)
	b.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "ERROR"})
	want(slog.LevelDebug)
	a.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "WARN"})
	want(slog.LevelInfo) // never above INFO
	a.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "DEBUG"})
	want(slog.LevelDebug)
	a.conn.Close()
	want(slog.LevelInfo)
	b.conn.Close()
	want(slog.LevelInfo)
}

// TestLogGaps feeds records the Hub did not all get, as the Proxy reports
// them (Dropped, and gaps in Seq), and checks that every client is told, live
// and on replay.
func TestLogGaps(t *testing.T) {
	h, srv := setup(t, &memSource{}, nil)
	c, _ := dial(t, srv)
	c.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "ERROR"})
	feed := func() {
		h.ObserveLog(record(1, slog.LevelError, "a"))
		r := record(5, slog.LevelDebug, "below the client's level") // 2, 3, 4 lost
		r.Dropped = 3
		h.ObserveLog(r)
		h.ObserveLog(record(6, slog.LevelError, "b"))
		r = record(0, slog.LevelError, "unnumbered, after 2 drops") // numbered by the hub: 9
		r.Dropped = 2
		h.ObserveLog(r)
	}
	feed()

	live, dropped := readReplay(t, c)
	if want := []uint64{1, 0, 6, 0, 9}; !slices.Equal(live, want) || !slices.Equal(dropped, []uint64{3, 2}) {
		t.Fatalf("live stream %v, dropped %v; want %v, dropped [3 2]", live, dropped, want)
	}

	// Nobody wanted DEBUG, so record 5 was not kept; its seq is no loss.
	c2, _ := dial(t, srv)
	c2.send(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"logs"}, LogLevel: "DEBUG", Since: ptr[uint64](0)})
	replay, dropped := readReplay(t, c2)
	if want := []uint64{1, 0, 6, 0, 9}; !slices.Equal(replay, want) || !slices.Equal(dropped, []uint64{3, 2}) {
		t.Fatalf("replay %v, dropped %v; want %v, dropped [3 2]", replay, dropped, want)
	}

	// The same records with a client at DEBUG: record 5 is sent and kept.
	h, srv = setup(t, &memSource{}, nil)
	d, _ := dial(t, srv)
	d.subscribe(hub.Request{Topics: []string{"logs"}, LogLevel: "DEBUG"})
	feed()
	if live, dropped := readReplay(t, d); !slices.Equal(live, []uint64{1, 0, 5, 6, 0, 9}) || !slices.Equal(dropped, []uint64{3, 2}) {
		t.Fatalf("DEBUG live stream %v, dropped %v", live, dropped)
	}
	c3, _ := dial(t, srv)
	c3.send(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"logs"}, LogLevel: "DEBUG", Since: ptr[uint64](0)})
	replay, dropped = readReplay(t, c3)
	if want := []uint64{1, 0, 5, 6, 0, 9}; !slices.Equal(replay, want) || !slices.Equal(dropped, []uint64{3, 2}) {
		t.Fatalf("replay %v, dropped %v; want %v, dropped [3 2]", replay, dropped, want)
	}
}

func TestNoBacklog(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{LogBacklog: -1})
	for i := uint64(1); i <= 10; i++ {
		h.ObserveLog(record(i, slog.LevelError, "m"))
	}
	c, hello := dial(t, srv)
	if hello.LogBacklog != 0 || hello.LogSeq != 10 {
		t.Fatalf("hello %+v", hello)
	}
	c.send(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"logs"}, Since: ptr[uint64](4)})
	if seqs, dropped := readReplay(t, c); !slices.Equal(seqs, []uint64{0}) || !slices.Equal(dropped, []uint64{6}) {
		t.Fatalf("replay %v, dropped %v; want one logsDropped of 6", seqs, dropped)
	}
}

func TestEvents(t *testing.T) {
	h, srv := setup(t, &memSource{}, nil)
	c, _ := dial(t, srv)
	c.subscribe(hub.Request{Topics: []string{"events"}})
	start := time.Date(2026, 11, 27, 10, 30, 45, 123456789, time.FixedZone("CET", 3600))
	ci := proxywatch.ConnInfo{ID: 42, Parent: 7, Protocol: proxywatch.ProtoHTTPSMITM, Method: "GET",
		Host: "example.com:443", URL: "https://example.com/x", Client: "127.0.0.1:5000", Start: start}
	h.ObserveConn(proxywatch.ConnEvent{State: proxywatch.ConnOpened, Conn: ci})
	h.ObserveConn(proxywatch.ConnEvent{State: proxywatch.ConnState(99), Conn: ci}) // unknown: not sent
	ci.End, ci.Up, ci.Down, ci.Status = start.Add(1500*time.Millisecond), 10, 20, 502
	ci.EndReason, ci.Err = proxywatch.EndUpstreamError, "dial tcp: refused"
	h.ObserveConn(proxywatch.ConnEvent{State: proxywatch.ConnClosed, Conn: ci})

	_, raw := c.next()
	want := `{"type":"event","data":{"event":"opened","conn":{"id":42,"method":"GET","host":"example.com:443",` +
		`"url":"https://example.com/x","remote":"127.0.0.1:5000","protocol":"HTTPS-MITM","up":0,"down":0,` +
		`"start":"2026-11-27T09:30:45.123456789Z","upRate":0,"downRate":0,"status":0,"parent":7}}}`
	if string(raw) != want {
		t.Fatalf("opened event\n%s\nwant\n%s", raw, want)
	}
	_, raw = c.next()
	want = `{"type":"event","data":{"event":"closed","conn":{"id":42,"method":"GET","host":"example.com:443",` +
		`"url":"https://example.com/x","remote":"127.0.0.1:5000","protocol":"HTTPS-MITM","up":10,"down":20,` +
		`"start":"2026-11-27T09:30:45.123456789Z","upRate":0,"downRate":0,"status":502,"parent":7,` +
		`"end":"2026-11-27T09:30:46.623456789Z","endReason":"upstream error","error":"dial tcp: refused"}}}`
	if string(raw) != want {
		t.Fatalf("closed event\n%s\nwant\n%s", raw, want)
	}
}

// connEvent makes the lifecycle event of connection id.
func connEvent(id int, state proxywatch.ConnState) proxywatch.ConnEvent {
	start := time.Date(2026, 11, 27, 10, 30, 45, 0, time.UTC).Add(time.Duration(id) * time.Millisecond)
	ci := proxywatch.ConnInfo{ID: proxywatch.ConnID(id), Protocol: proxywatch.ProtoHTTP, Method: "GET",
		Host: "example.com:80", URL: fmt.Sprintf("http://example.com/%d?q=\"<&>\"", id), Client: "127.0.0.1:5000", Start: start}
	if state == proxywatch.ConnClosed {
		ci.End, ci.Up, ci.Down, ci.Status, ci.EndReason = start.Add(time.Second), 10, uint64(id)*100, 200, proxywatch.EndCompleted
	}
	return proxywatch.ConnEvent{State: state, Conn: ci}
}

// TestEventBatches checks the batched form of events: one eventBatch per
// interval with every event since the previous one, in order, encoded as
// encoding/json encodes []Event, except that a connection opened and closed
// within the interval is sent once, as its closed event; a client of the
// per-event topic gets every event, one frame each; a client that subscribes
// gets no event from before its subscribe.
func TestEventBatches(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{EventInterval: time.Hour})
	batched, _ := dial(t, srv)
	batched.subscribe(hub.Request{Topics: []string{"eventBatches"}})
	single, _ := dial(t, srv)
	single.subscribe(hub.Request{Topics: []string{"events"}})

	wireEvent := func(id int, st proxywatch.ConnState) hub.Event {
		ev, _ := hub.EventFromConn(connEvent(id, st))
		return ev
	}
	observe := func(id int, st proxywatch.ConnState) hub.Event {
		h.ObserveConn(connEvent(id, st))
		return wireEvent(id, st)
	}
	// All, in order: what the per-event client gets.
	all := []hub.Event{observe(100, proxywatch.ConnOpened)} // closes in the next interval
	want := []hub.Event{all[0]}
	for id := 1; id <= 50; id += 2 {
		// Two open, then both close: each is sent once, as closed, where it closed.
		all = append(all, observe(id, proxywatch.ConnOpened), observe(id+1, proxywatch.ConnOpened),
			observe(id, proxywatch.ConnClosed), observe(id+1, proxywatch.ConnClosed))
		want = append(want, wireEvent(id, proxywatch.ConnClosed), wireEvent(id+1, proxywatch.ConnClosed))
	}
	all = append(all, observe(60, proxywatch.ConnOpened)) // still open at the end of the interval
	want = append(want, all[len(all)-1])
	late, _ := dial(t, srv)
	late.subscribe(hub.Request{Topics: []string{"eventBatches"}}) // flushes the batch to the earlier subscriber
	second := []hub.Event{observe(100, proxywatch.ConnClosed), observe(51, proxywatch.ConnOpened)}
	all = append(all, second...)
	h.FlushEventsNow()
	h.FlushEventsNow() // nothing pending: no frame

	encode := func(evs []hub.Event) string {
		var buf strings.Builder
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(map[string]any{"type": "eventBatch", "data": evs})
		// encoding/json sorts map keys: data before type. The hub puts type first.
		var m struct {
			Data json.RawMessage `json:"data"`
		}
		json.Unmarshal([]byte(buf.String()), &m)
		return `{"type":"eventBatch","data":` + string(m.Data) + `}`
	}
	if _, raw := batched.next(); string(raw) != encode(want) {
		t.Fatalf("first batch\n%s\nwant\n%s", raw, encode(want))
	}
	if _, raw := batched.next(); string(raw) != encode(second) {
		t.Fatalf("second batch %s\nwant %s", raw, encode(second))
	}
	if _, raw := late.next(); string(raw) != encode(second) {
		t.Fatalf("late subscriber's first batch %s, want only the events after its subscribe", raw)
	}
	for i, w := range all {
		var got hub.Event
		single.nextData(hub.TypeEvent, &got)
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("event %d: %+v, want %+v", i, got, w)
		}
	}
	// Nothing else is queued for either: the next frame answers a barrier.
	for _, c := range []*client{batched, late, single} {
		c.send(hub.Request{Action: hub.ActionGetHistory})
		if m, raw := c.next(); m.Type != hub.TypeHistory {
			t.Fatalf("got %s, want history", raw)
		}
	}
}

// TestEventBatchesByThemselves checks that batches go out every interval
// without being asked, and that a batch grown to its bound goes out at once.
func TestEventBatchesByThemselves(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{EventInterval: 20 * time.Millisecond, SendQueue: 4096})
	c, _ := dial(t, srv)
	c.subscribe(hub.Request{Topics: []string{"eventBatches"}})
	const n = 10000 // more than one bound's worth
	for id := 1; id <= n; id++ {
		h.ObserveConn(connEvent(id, proxywatch.ConnOpened))
	}
	next := 1
	frames := 0
	for next <= n {
		var evs []hub.Event
		c.nextData(hub.TypeEventBatch, &evs)
		frames++
		for _, ev := range evs {
			if int(ev.Conn.ID) != next || ev.Event != "opened" {
				t.Fatalf("event %s %d, want opened %d", ev.Event, ev.Conn.ID, next)
			}
			next++
		}
	}
	if frames < 3 {
		t.Fatalf("%d events in %d frames: a batch is bounded", n, frames)
	}
}

// TestSlowEventBatchClientDropped checks that a client of eventBatches that
// does not read is dropped with 1008 while one that reads gets every event.
func TestSlowEventBatchClientDropped(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{SendQueue: 8, WriteWait: time.Minute, EventInterval: time.Hour})
	slow, _ := dial(t, srv)
	slow.subscribe(hub.Request{Topics: []string{"eventBatches"}})
	good, _ := dial(t, srv)
	good.subscribe(hub.Request{Topics: []string{"eventBatches"}})
	id := 0
	for h.Clients() == 2 || id < 10000 {
		for range 500 {
			id++
			h.ObserveConn(connEvent(id, proxywatch.ConnOpened))
		}
		h.FlushEventsNow()
		var evs []hub.Event
		good.nextData(hub.TypeEventBatch, &evs)
		if len(evs) != 500 || int(evs[499].Conn.ID) != id {
			t.Fatalf("good client got %d events ending at %d, want 500 ending at %d", len(evs), evs[len(evs)-1].Conn.ID, id)
		}
		if id > 1_000_000 {
			t.Fatal("the slow client was never dropped")
		}
	}
	if code := slow.closeCode(); code != websocket.ClosePolicyViolation {
		t.Fatalf("slow client close code %d, want 1008", code)
	}
}

func TestHistoryAndCloseActions(t *testing.T) {
	src := &memSource{}
	for i := 1; i <= 1500; i++ {
		src.history = append(src.history, proxywatch.ConnInfo{ID: proxywatch.ConnID(i), End: time.Now()})
	}
	var live []proxywatch.ConnInfo
	for i, host := range []string{"Example.com:443", "other.org:80", "api.EXAMPLE.com:443", "x:1", "y:2"} {
		proto := proxywatch.ProtoTunnel
		if i == 2 {
			proto = proxywatch.ProtoHTTP
		}
		live = append(live, proxywatch.ConnInfo{ID: proxywatch.ConnID(i + 1), Host: host, Protocol: proto, Client: fmt.Sprintf("10.0.0.%d:999", i)})
	}
	src.setConns(live)
	_, srv := setup(t, src, nil)
	c, _ := dial(t, srv)

	var hist []hub.Conn
	m := c.send2(hub.Request{Action: "getHistory", Ref: json.RawMessage(`7`)}, hub.TypeHistory, &hist)
	if len(hist) != 1000 || hist[0].ID != 501 || hist[999].ID != 1500 || string(m.Ref) != "7" {
		t.Fatalf("default history: %d entries from %d, ref %s", len(hist), hist[0].ID, m.Ref)
	}
	c.send2(hub.Request{Action: "getHistory", Limit: 3}, hub.TypeHistory, &hist)
	if len(hist) != 3 || hist[2].ID != 1500 {
		t.Fatalf("limit 3: %+v", hist)
	}

	var res hub.Result
	m = c.send2(hub.Request{Action: "closeConnections", Filter: &hub.Filter{Host: "example.COM", Protocol: "HTTPS-Tunnel"}, Ref: json.RawMessage(`"f"`)}, hub.TypeResult, &res)
	if res.Action != "closeConnections" || res.Closed != 1 || !slices.Equal(res.IDs, []proxywatch.ConnID{1}) || string(m.Ref) != `"f"` {
		t.Fatalf("filter result %+v ref %s", res, m.Ref)
	}
	c.send2(hub.Request{Action: "closeConnections", Filter: &hub.Filter{Client: "10.0.0.2"}}, hub.TypeResult, &res)
	if !slices.Equal(res.IDs, []proxywatch.ConnID{3}) {
		t.Fatalf("client filter result %+v", res)
	}
	c.send2(hub.Request{Action: "closeConnections", IDs: []proxywatch.ConnID{2, 4, 77}}, hub.TypeResult, &res)
	if res.Closed != 2 || !slices.Equal(res.IDs, []proxywatch.ConnID{2, 4}) {
		t.Fatalf("ids result %+v", res)
	}
	c.send2(hub.Request{Action: "closeConnection", ID: 4}, hub.TypeResult, &res)
	if res.Closed != 0 || res.IDs == nil || len(res.IDs) != 0 {
		t.Fatalf("closing a closed id: %+v", res)
	}
	c.sendRaw(`{"action":"closeAllConnections"}`)
	c.skipUntil(hub.TypeResult, &res)
	if res.Action != "closeAllConnections" || res.Closed != 1 || !slices.Equal(res.IDs, []proxywatch.ConnID{5}) {
		t.Fatalf("closeAll result %+v", res)
	}
}

// send2 sends req and decodes the next frame, which must be of type typ.
func (c *client) send2(req hub.Request, typ string, data any) hub.Message {
	c.t.Helper()
	c.send(req)
	return c.nextData(typ, data)
}

func TestBadFrames(t *testing.T) {
	_, srv := setup(t, &memSource{}, nil)
	c, _ := dial(t, srv)
	for _, tc := range []struct {
		frame, code, action, ref, msg string
	}{
		{`{"action":`, "bad_json", "", "", "malformed JSON"},
		{`not json`, "bad_json", "", "", "malformed JSON"},
		{`[1,2]`, "bad_json", "", "", "JSON object"},
		{`"subscribe"`, "bad_json", "", "", "JSON object"},
		{`{}`, "bad_request", "", "", "missing action"},
		{`null`, "bad_request", "", "", "missing action"},
		{`{"action":"explode","ref":"r1"}`, "unknown_action", "explode", `"r1"`, "unknown action"},
		{`{"action":"explode","ref":12.5}`, "unknown_action", "explode", `12.5`, "unknown action"},
		{`{"action":"subscribe","ref":{"a":1}}`, "bad_request", "subscribe", "", "ref"},
		{`{"action":"subscribe","topics":"traffic","ref":3}`, "bad_request", "subscribe", "3", "topics"},
		{`{"action":"subscribe","logLevel":"LOUD"}`, "bad_request", "subscribe", "", "logLevel"},
		{`{"action":"closeConnection"}`, "bad_request", "closeConnection", "", "id required"},
		{`{"action":"closeConnection","id":"42"}`, "bad_request", "closeConnection", "", "id"},
		{`{"action":"closeConnections"}`, "bad_request", "closeConnections", "", "ids or filter"},
		{`{"action":"closeConnections","filter":{}}`, "bad_request", "closeConnections", "", "empty filter"},
		{`{"action":"closeConnections","filter":{"host":"a"},"ids":[1]}`, "bad_request", "closeConnections", "", "not both"},
		{`{"action":"getHistory","limit":-1}`, "bad_request", "getHistory", "", "negative"},
	} {
		c.sendRaw(tc.frame)
		var e hub.Error
		m := c.nextData(hub.TypeError, &e)
		if e.Code != tc.code || e.Action != tc.action || string(m.Ref) != tc.ref || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: got %+v ref %s; want code %s action %q ref %s message ~%q", tc.frame, e, m.Ref, tc.code, tc.action, tc.ref, tc.msg)
		}
	}
	// The socket is still open and works.
	if s := c.subscribe(hub.Request{Topics: []string{"logs"}, Ref: json.RawMessage(`"ok"`)}); s.LogLevel != "INFO" {
		t.Fatalf("subscribed %+v", s)
	}
}

func TestOversizedFrame(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{MaxMessageBytes: 1024})
	c, hello := dial(t, srv)
	if hello.MaxMessageBytes != 1024 {
		t.Fatalf("hello maxMessageBytes %d", hello.MaxMessageBytes)
	}
	c.sendRaw(`{"action":"subscribe","pad":"` + strings.Repeat("x", 1024-31) + `"}`) // exactly 1024 bytes: fine
	c.skipUntil(hub.TypeSubscribed, nil)
	c.sendRaw(`{"action":"subscribe","pad":"` + strings.Repeat("x", 200000) + `"}`)
	if code := c.closeCode(); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want 1009", code)
	}
	waitFor(t, "the client to be dropped", func() bool { return h.Clients() == 0 })
}

func TestCloseSendsGoingAway(t *testing.T) {
	h := hub.NewWithSource(&memSource{}, &hub.Options{Token: "s3cret"})
	srv := serve(t, h)
	var cs []*client
	for range 5 {
		c, _ := dial(t, srv)
		c.subscribe(hub.Request{Topics: []string{"traffic", "logs"}})
		cs = append(cs, c)
	}
	if n := h.Clients(); n != 5 {
		t.Fatalf("Clients() = %d", n)
	}
	h.Close()
	h.Close() // idempotent
	for i, c := range cs {
		if code := c.closeCode(); code != websocket.CloseGoingAway {
			t.Errorf("client %d: close code %d, want 1001", i, code)
		}
	}
	if n := h.Clients(); n != 0 {
		t.Fatalf("Clients() = %d after Close", n)
	}
	_, resp, _ := websocket.DefaultDialer.Dial(wsURL(srv, "?token=s3cret"), nil)
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Close: %v, want 503", resp)
	}
	h.ObserveLog(record(1, slog.LevelError, "after close")) // ignored, no panic
}

// TestSlowClientDropped fills the queue of a client that stops reading and
// checks that it, and only it, is dropped, with 1008, while a reading client
// gets every record.
func TestSlowClientDropped(t *testing.T) {
	h, srv := setup(t, &memSource{}, &hub.Options{SendQueue: 8, WriteWait: time.Minute})
	slow, _ := dial(t, srv)
	slow.subscribe(hub.Request{Topics: []string{"logs"}})
	good, _ := dial(t, srv)
	good.subscribe(hub.Request{Topics: []string{"logs"}})

	var read atomic.Uint64 // records the good client has read
	result := make(chan error, 1)
	go func() {
		for {
			m, raw, err := good.read()
			switch {
			case err != nil:
				result <- err
				return
			case m.Type == hub.TypeHistory:
				result <- nil
				return
			case m.Type != hub.TypeLog:
				result <- fmt.Errorf("unexpected %s", raw)
				return
			}
			read.Add(1)
		}
	}()
	big := strings.Repeat("y", 32<<10)
	var sent uint64
	feed := func() {
		sent++
		h.ObserveLog(record(sent, slog.LevelInfo, big))
		// The good client never has more than four records outstanding, so
		// only the client that does not read can fall behind.
		waitFor(t, "the good client to read", func() bool { return read.Load()+4 >= sent })
	}
	for h.Clients() == 2 {
		feed()
	}
	for range 20 {
		feed()
	}
	if n := h.Clients(); n != 1 {
		t.Fatalf("Clients() = %d, want 1", n)
	}
	good.send(hub.Request{Action: hub.ActionGetHistory})
	if err := <-result; err != nil {
		t.Fatalf("good client: %v", err)
	}
	if n := read.Load(); n != sent {
		t.Fatalf("good client read %d records of %d", n, sent)
	}
	// Reading again, the slow client gets what was on its way, then 1008.
	if code := slow.closeCode(); code != websocket.ClosePolicyViolation {
		t.Fatalf("slow client close code %d, want 1008", code)
	}
}
