package hub_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
)

// deltaView is what a client of connectionsDelta rebuilds from the messages,
// as the dashboard does: entries by id.
type deltaView map[proxywatch.ConnID]hub.Conn

func (v deltaView) apply(t *testing.T, d hub.ConnectionsDelta) {
	t.Helper()
	if d.Conns == nil || d.Moved == nil || d.Removed == nil {
		t.Fatalf("null array in %+v", d)
	}
	if d.Full {
		clear(v)
	}
	for _, c := range d.Conns {
		v[c.ID] = c
	}
	for _, m := range d.Moved {
		c, ok := v[m.ID]
		if !ok {
			t.Fatalf("moved entry for unknown id %d", m.ID)
		}
		if m.Up != nil {
			c.Up = *m.Up
		}
		if m.Down != nil {
			c.Down = *m.Down
		}
		if m.UpRate != nil {
			c.UpRate = float64(*m.UpRate)
		}
		if m.DownRate != nil {
			c.DownRate = float64(*m.DownRate)
		}
		if m.Status != nil {
			c.Status = *m.Status
		}
		v[m.ID] = c
	}
	for _, id := range d.Removed {
		delete(v, id)
	}
}

func (v deltaView) list() []hub.Conn {
	l := make([]hub.Conn, 0, len(v))
	for _, c := range v {
		l = append(l, c)
	}
	slices.SortFunc(l, func(a, b hub.Conn) int { return int(a.ID - b.ID) })
	return l
}

// stdJSON encodes v as the hub frames are: encoding/json without HTML
// escaping and without the newline.
func stdJSON(t testing.TB, v any) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// readDelta reads the next frame, which must be a connectionsDelta, checks
// that its bytes are encoding/json's of what it decodes to, and returns it.
func readDelta(t *testing.T, c *client) hub.ConnectionsDelta {
	t.Helper()
	m, raw := c.next()
	if m.Type != hub.TypeConnectionsDelta {
		t.Fatalf("got %s, want connectionsDelta", raw)
	}
	var d hub.ConnectionsDelta
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatal(err)
	}
	if want := stdJSON(t, hub.Message{Type: m.Type, Data: json.RawMessage(stdJSON(t, d))}); string(raw) != want {
		t.Fatalf("frame\n%s\nis not encoding/json's\n%s", raw, want)
	}
	return d
}

// TestConnectionsDelta checks each part of a delta on a hand-made change.
func TestConnectionsDelta(t *testing.T) {
	src := &memSource{}
	conns := manyConns(5)
	src.setConns(conns)
	h, srv := setup(t, src, &hub.Options{ConnectionsInterval: time.Hour})
	c, _ := dial(t, srv)
	c.subscribe(hub.Request{Topics: []string{"connectionsDelta"}})
	d := readDelta(t, c)
	if !d.Full || len(d.Conns) != 5 || len(d.Moved)+len(d.Removed) != 0 {
		t.Fatalf("first delta %+v, want the full list", d)
	}

	next := slices.Clone(conns)
	next[1].Down += 1000
	next[1].DownRate = 2048.4
	next[3].URL = "https://changed.example/"
	next[4].Status = 404
	next = slices.Delete(next, 2, 3) // id 100002 leaves
	added := manyConns(7)[6]
	next = append(next, added)
	src.setConns(next)
	h.PushConnectionsNow()
	d = readDelta(t, c)
	ids := func(cs []hub.Conn) (s []proxywatch.ConnID) {
		for _, c := range cs {
			s = append(s, c.ID)
		}
		return s
	}
	down, rate, status := next[1].Down, int64(2048), 404
	wantMoved := []hub.ConnMove{{ID: next[1].ID, Down: &down, DownRate: &rate}, {ID: next[3].ID, Status: &status}}
	if d.Full || !slices.Equal(ids(d.Conns), []proxywatch.ConnID{next[2].ID, added.ID}) ||
		stdJSON(t, d.Moved) != stdJSON(t, wantMoved) || !slices.Equal(d.Removed, []proxywatch.ConnID{conns[2].ID}) {
		t.Fatalf("delta %s", stdJSON(t, d))
	}
	if d.Conns[0].URL != "https://changed.example/" {
		t.Fatalf("changed entry %+v", d.Conns[0])
	}

	h.PushConnectionsNow()
	if d := readDelta(t, c); d.Full || len(d.Conns)+len(d.Moved)+len(d.Removed) != 0 {
		t.Fatalf("delta without change: %s", stdJSON(t, d))
	}
}

// TestConnectionsDeltaProperty moves, opens and closes random connections
// for many ticks and checks that what a delta client rebuilds equals the
// full list a connections client gets, every tick, for a client there from
// the start and for ones that subscribe on the way (and one that leaves and
// comes back, so that the hub forgets and rebuilds its base).
func TestConnectionsDeltaProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	src := &memSource{}
	conns := manyConns(300)
	src.setConns(conns)
	h, srv := setup(t, src, &hub.Options{ConnectionsInterval: time.Hour, SendQueue: 1024})
	fullC, _ := dial(t, srv)
	fullC.subscribe(hub.Request{Topics: []string{"connections"}})
	var full []hub.Conn
	fullC.nextData(hub.TypeConnections, &full)

	type watcher struct {
		c    *client
		view deltaView
	}
	var watchers []*watcher
	join := func() {
		w := &watcher{view: deltaView{}}
		w.c, _ = dial(t, srv)
		w.c.subscribe(hub.Request{Topics: []string{"connectionsDelta"}})
		w.view.apply(t, readDelta(t, w.c))
		if got := stdJSON(t, w.view.list()); got != stdJSON(t, hubConns(src.Connections())) {
			t.Fatalf("full list on subscribe differs")
		}
		watchers = append(watchers, w)
	}
	join()
	nextID := proxywatch.ConnID(1 << 20)
	for tick := range 60 {
		switch tick {
		case 20:
			join()
		case 30: // everyone leaves: the hub forgets its base
			for _, w := range watchers {
				w.c.conn.Close()
			}
			watchers = nil
			waitFor(t, "the delta clients to leave", func() bool { return h.Clients() == 1 })
			h.PushConnectionsNow()
			fullC.nextData(hub.TypeConnections, &full)
			join()
		case 40:
			join()
		}
		var next []proxywatch.ConnInfo
		for _, ci := range conns {
			switch r := rng.IntN(100); {
			case r < 5: // closed
				continue
			case r < 30:
				ci.Down += uint64(rng.IntN(100000))
				ci.DownRate = rng.Float64() * 1e6
			case r < 35:
				ci.Up += uint64(rng.IntN(1000))
				ci.UpRate = float64(rng.IntN(3)) // often rounds to the same
			case r < 37:
				ci.Status = 200 + rng.IntN(400)
			case r < 38:
				ci.URL += "/more"
			}
			next = append(next, ci)
		}
		for range rng.IntN(20) {
			ci := manyConns(1)[0]
			ci.ID, nextID = nextID, nextID+1
			ci.Host = fmt.Sprintf("new-%d.example:443", ci.ID)
			next = append(next, ci)
		}
		conns = next
		src.setConns(conns)
		h.PushConnectionsNow()
		fullC.nextData(hub.TypeConnections, &full)
		want := stdJSON(t, full)
		for i, w := range watchers {
			w.view.apply(t, readDelta(t, w.c))
			if got := stdJSON(t, w.view.list()); got != want {
				t.Fatalf("tick %d, delta client %d rebuilt\n%.300s\nwant\n%.300s", tick, i, got, want)
			}
		}
	}
}

func hubConns(cs []proxywatch.ConnInfo) []hub.Conn {
	l := make([]hub.Conn, len(cs))
	for i, ci := range cs {
		l[i] = hub.ConnFromInfo(ci)
	}
	return l
}
