package proxywatch

import (
	"bytes"
	"io"
	"runtime"
	"testing"
)

// A plain response body reaches the client connection's ReadFrom (net/http
// hands it there): the copy takes a pooled buffer instead of allocating 32
// KiB for every response, as a bare *net.TCPConn does.
func TestClientReadFromUsesPooledBuffer(t *testing.T) {
	p := New(nil)
	defer p.Close()
	c := &clientTCPConn{clientConn: &clientConn{Conn: nopConn{}, p: p}}
	body := make([]byte, 1024)
	copyBody := func() {
		n, err := c.ReadFrom(struct{ io.Reader }{bytes.NewReader(body)}) // no WriteTo: a real copy
		if n != int64(len(body)) || err != nil {
			t.Fatalf("ReadFrom: %d, %v", n, err)
		}
	}
	copyBody()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 100
	for range n {
		copyBody()
	}
	runtime.ReadMemStats(&after)
	// Without the pool every copy allocates 32 KiB. With it, nothing; but
	// the race detector makes sync.Pool drop a share of what it is given,
	// so the bound is half a buffer.
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 16<<10 {
		t.Errorf("%d bytes allocated per response copied, want no 32 KiB copy buffer each time", per)
	}
	if c.wire.Load() != (n+1)*uint64(len(body)) {
		t.Errorf("wire count %d, want %d", c.wire.Load(), (n+1)*len(body))
	}
}
