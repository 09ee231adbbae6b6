package proxywatch

import (
	"net"
	"testing"
	"time"
)

// nopConn is an in-memory net.Conn whose Read and Write return at once, so the
// benchmarks below measure the counting wrappers and nothing else.
type nopConn struct{}

func (nopConn) Read(b []byte) (int, error)         { return len(b), nil }
func (nopConn) Write(b []byte) (int, error)        { return len(b), nil }
func (nopConn) Close() error                       { return nil }
func (nopConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (nopConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (nopConn) SetDeadline(t time.Time) error      { return nil }
func (nopConn) SetReadDeadline(t time.Time) error  { return nil }
func (nopConn) SetWriteDeadline(t time.Time) error { return nil }

// BenchmarkCountingConn measures the per-Read/Write cost of the tunnel and
// client connection wrappers: one atomic add each, no allocation.
func BenchmarkCountingConn(b *testing.B) {
	p := New(nil)
	e := &entry{}
	tunnel := &tunnelConn{Conn: nopConn{}, e: e, p: p}
	client := &trackedConn{Conn: nopConn{}, p: p}
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
	client := &trackedConn{Conn: nopConn{}, p: p}
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
