package proxywatch

import (
	"context"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"
	"unsafe"
)

// Every live connection holds an entry and every client connection a
// clientConn: they stay within the allocator's size classes that keep a
// tracked tunnel under 1 KiB beyond goproxy's own memory
// (BenchmarkIdleTunnelMemory measures the whole).
func TestTrackingStateSizes(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 256 {
		t.Errorf("entry is %d bytes, want at most 256", n)
	}
	if n := unsafe.Sizeof(clientConn{}); n > 176 {
		t.Errorf("clientConn is %d bytes, want at most 176", n)
	}
	if n := unsafe.Sizeof(tunnelConn{}); n > 64 {
		t.Errorf("tunnelConn is %d bytes, want at most 64", n)
	}
}

// Two open connections with the same remote address (a listener accepting on
// several local addresses): the newer one is found by address, both are
// closed by closeAll and watched for idleness, and each leaves when closed.
func TestTrackerSharedRemoteAddress(t *testing.T) {
	var tr clientSet
	older := &clientConn{remote: "10.0.0.5:1234"}
	newer := &clientConn{remote: "10.0.0.5:1234"}
	other := &clientConn{remote: "10.0.0.6:1234"}
	for _, c := range []*clientConn{older, newer, other} {
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
	if tr.add(&clientConn{remote: "10.0.0.7:1"}) {
		t.Error("add accepted a connection after closeAll")
	}
}

// The request context that connContext makes carries the clientConn and
// everything of the server's context: its values, its cancellation.
func TestConnContextCarriesServerContext(t *testing.T) {
	type key struct{}
	base, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "server"))
	tc := &clientConn{Conn: nopConn{}}
	ctx := connContext(base, &clientTCPConn{tc})
	if connFrom(ctx) != tc {
		t.Fatal("connFrom does not find the clientConn")
	}
	if ctx.Value(key{}) != "server" {
		t.Error("a value of the server's context is lost")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.com/", nil)
	rctx, rcancel := context.WithCancel(req.Context())
	defer rcancel()
	if connFrom(rctx) != tc {
		t.Error("connFrom does not find the clientConn through a derived context")
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

// nopConn is an in-memory net.Conn whose Read and Write return at once, so the
// benchmarks below measure the counting wrappers and nothing else.
type nopConn struct{}

// BenchmarkCountingConn measures the per-Read/Write cost of the tunnel and
// client connection wrappers: one atomic add each, no allocation.
func BenchmarkCountingConn(b *testing.B) {
	p := New(nil)
	e := &entry{}
	tunnel := &tunnelConn{Conn: nopConn{}, e: e, p: p}
	client := &clientConn{Conn: nopConn{}, p: p}
	buf := make([]byte, 512)
	b.ReportAllocs()
	b.SetBytes(int64(4 * len(buf)))
	for b.Loop() {
		tunnel.Read(buf)
		tunnel.Write(buf)
		client.Read(buf)
		client.Write(buf)
	}
	if e.up.Load() == 0 || e.down.Load() == 0 || client.wire.Load() == 0 {
		b.Fatal("nothing counted")
	}
}

func TestCountingConnAllocatesNothing(t *testing.T) {
	p := New(nil)
	e := &entry{}
	tunnel := &tunnelConn{Conn: nopConn{}, e: e, p: p}
	client := &clientConn{Conn: nopConn{}, p: p}
	buf := make([]byte, 512)
	allocs := testing.AllocsPerRun(1000, func() {
		tunnel.Read(buf)
		tunnel.Write(buf)
		client.Read(buf)
		client.Write(buf)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Read/Write round, want 0", allocs)
	}
	if e.up.Load() != 1001*512 || e.down.Load() != 1001*512 {
		t.Errorf("counted %d/%d", e.up.Load(), e.down.Load())
	}
}

func (nopConn) Read(b []byte) (int, error) { return len(b), nil }

func (nopConn) Write(b []byte) (int, error) { return len(b), nil }

func (nopConn) Close() error { return nil }

func (nopConn) LocalAddr() net.Addr { return &net.TCPAddr{} }

func (nopConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }

func (nopConn) SetDeadline(t time.Time) error { return nil }

func (nopConn) SetReadDeadline(t time.Time) error { return nil }

func (nopConn) SetWriteDeadline(t time.Time) error { return nil }
