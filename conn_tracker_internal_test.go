package proxywatch

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"
	"unsafe"
)

// Every live connection holds an entry and every client connection a
// trackedConn: they stay within the allocator's size classes that keep a
// tracked tunnel under 1 KiB beyond goproxy's own memory
// (BenchmarkIdleTunnelMemory measures the whole).
func TestTrackingStateSizes(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 256 {
		t.Errorf("entry is %d bytes, want at most 256", n)
	}
	if n := unsafe.Sizeof(trackedConn{}); n > 176 {
		t.Errorf("trackedConn is %d bytes, want at most 176", n)
	}
	if n := unsafe.Sizeof(tunnelConn{}); n > 64 {
		t.Errorf("tunnelConn is %d bytes, want at most 64", n)
	}
}

// Two open connections with the same remote address (a listener accepting on
// several local addresses): the newer one is found by address, both are
// closed by closeAll and watched for idleness, and each leaves when closed.
func TestTrackerSharedRemoteAddress(t *testing.T) {
	var tr tracker
	older := &trackedConn{remote: "10.0.0.5:1234"}
	newer := &trackedConn{remote: "10.0.0.5:1234"}
	other := &trackedConn{remote: "10.0.0.6:1234"}
	for _, c := range []*trackedConn{older, newer, other} {
		if !tr.add(c) {
			t.Fatal("add refused before closeAll")
		}
		c.hijacked.Store(true)
	}
	if got := tr.lookup("10.0.0.5:1234"); got != newer {
		t.Errorf("lookup found %p, want the newer connection %p", got, newer)
	}
	now := time.Now()
	if idle := tr.idle(now, time.Second); len(idle) != 0 {
		t.Errorf("idle at the first look: %d connections", len(idle))
	}
	idle := tr.idle(now.Add(2*time.Second), time.Second)
	if len(idle) != 3 || !slices.Contains(idle, older) || !slices.Contains(idle, newer) || !slices.Contains(idle, other) {
		t.Errorf("idle after 2s: %v, want all three", idle)
	}

	tr.remove(newer)
	if got := tr.lookup("10.0.0.5:1234"); got != nil {
		t.Errorf("lookup after the newer one closed found %p, want none", got)
	}
	tr.remove(older)
	tr.remove(older) // closing twice is harmless
	all := tr.closeAll()
	if len(all) != 1 || all[0] != other {
		t.Errorf("closeAll returned %v, want only the other connection", all)
	}
	if tr.add(&trackedConn{remote: "10.0.0.7:1"}) {
		t.Error("add accepted a connection after closeAll")
	}
}

// The request context that connContext makes carries the trackedConn and
// everything of the server's context: its values, its cancellation.
func TestConnContextCarriesServerContext(t *testing.T) {
	type key struct{}
	base, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "server"))
	tc := &trackedConn{Conn: nopConn{}}
	ctx := connContext(base, &trackedTCPConn{tc})
	if connFrom(ctx) != tc {
		t.Fatal("connFrom does not find the trackedConn")
	}
	if ctx.Value(key{}) != "server" {
		t.Error("a value of the server's context is lost")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.com/", nil)
	rctx, rcancel := context.WithCancel(req.Context())
	defer rcancel()
	if connFrom(rctx) != tc {
		t.Error("connFrom does not find the trackedConn through a derived context")
	}
	cancel()
	select {
	case <-rctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the server's context does not reach a derived context")
	}
	if ctx.Err() != context.Canceled {
		t.Errorf("Err() = %v, want context.Canceled", ctx.Err())
	}
	if got := connContext(base, nopConn{}); got != base {
		t.Error("a connection that is not tracked gets a different context")
	}
}

// A session number as goproxy prints it resolves to the newest live
// connection with those low 16 bits, an older one when the newer ended, and
// to none past sessionPeriods×65536 sessions back.
func TestRegistryLiveSession(t *testing.T) {
	var r registry
	r.init(0)
	const s = 0x1234
	old := ConnID(s)
	newer := ConnID(3*0x10000 + s)
	ancient := ConnID(s + 0x20000)
	for _, id := range []ConnID{old, newer, ancient, 4*0x10000 + 7} {
		r.live[id] = &entry{info: connIdent{ID: id}}
	}
	max := int64(4*0x10000 + 7) // newer's next period has not come yet
	if id, ok := r.liveSession(s, max); !ok || id != newer {
		t.Errorf("liveSession = %d, %v; want %d", id, ok, newer)
	}
	delete(r.live, newer)
	if id, ok := r.liveSession(s, max); !ok || id != ancient {
		t.Errorf("after the newest ended: %d, %v; want %d", id, ok, ancient)
	}
	if id, ok := r.liveSession(s+1, max); ok {
		t.Errorf("low bits of no live connection resolved to %d", id)
	}
	if id, ok := r.liveSession(7, max); !ok || id != 4*0x10000+7 {
		t.Errorf("the newest session itself: %d, %v", id, ok)
	}
	delete(r.live, ancient)
	far := int64(old) + sessionPeriods*0x10000
	if id, ok := r.liveSession(s, far); ok {
		t.Errorf("a connection %d periods back resolved to %d", sessionPeriods, id)
	}
	if id, ok := r.liveSession(s, far-1); !ok || id != old {
		t.Errorf("a connection just within %d periods: %d, %v", sessionPeriods, id, ok)
	}
}
