package proxywatch

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// readAhead reads a MITM client connection while nobody else does, so that
// the Proxy notices the client going away while its request waits for the
// upstream. net/http does this for plain requests (its background read
// cancels the request of a client that left), but goproxy reads a MITM'd
// connection only when it wants the next request: without this, a client
// that gave up on a stalled upstream would keep its request, and the upstream
// connection, until the idle timeout. What is read ahead (a pipelined
// request, a TLS alert) is handed to the next Read, which first stops the
// read ahead with a past deadline, as net/http stops its own. It also holds
// the writeHold of the connection's MITM responses.
type readAhead struct {
	pending atomic.Bool // a read ahead is due or runs, or left bytes or an error: Read must look
	hold    writeHold   // the head of a small response waits for its body (mitmwrite.go)

	mu      sync.Mutex
	due     func()      // set while a read ahead is due: what it calls if the client is gone
	timer   *time.Timer // starts a due read ahead (startAhead); one per connection
	running bool
	done    chan struct{} // closed when the running read ahead returned
	buf     []byte        // read ahead, not handed over yet
	err     error         // what ended the read ahead, handed over after buf
}

// maxReadAhead bounds what a read ahead keeps: a client pipelining requests
// is then held back by TCP flow control, as it would be without it.
const maxReadAhead = 64 << 10

// aLongTimeAgo is a deadline in the past: it stops a pending read at once.
var aLongTimeAgo = time.Unix(1, 0)

// readAheadAfter is how long a request waits for its upstream before its
// client connection is read ahead. Most upstreams answer sooner, and such a
// request then costs no goroutine, no buffer and no system call to watch its
// client; a client that leaves a slow upstream is noticed this much later.
const readAheadAfter = 50 * time.Millisecond

// watchGone makes a read ahead due in readAheadAfter, unless one is due or
// runs or the client already ended. gone is called if the read ahead finds
// the client gone (EOF or an error). The caller must know that nobody reads
// the connection until the next Read of c, which cancels the read ahead, or
// stops it if it started.
func (c *clientConn) watchGone(gone func()) {
	a := c.ahead.Load()
	if a == nil {
		c.ahead.CompareAndSwap(nil, new(readAhead))
		a = c.ahead.Load()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running || a.due != nil || a.err != nil || len(a.buf) >= maxReadAhead {
		return
	}
	a.due = gone
	a.pending.Store(true)
	if a.timer == nil {
		a.timer = time.AfterFunc(readAheadAfter, func() { c.startAhead(a) })
	} else {
		a.timer.Reset(readAheadAfter)
	}
}

// startAhead runs the due read ahead, on the timer's goroutine. A timer that
// fired as the read ahead was taken back finds none due, or one due for the
// next request, which it may start early: while one is due, nobody reads.
func (c *clientConn) startAhead(a *readAhead) {
	a.mu.Lock()
	gone := a.due
	if gone == nil || a.running {
		a.mu.Unlock()
		return
	}
	a.due = nil
	a.running = true
	a.done = make(chan struct{})
	done := a.done
	a.mu.Unlock()
	c.readAheadLoop(a, done, gone)
}

// cancelDue takes back a read ahead that is due and has not started. a.mu
// must be held.
func (a *readAhead) cancelDue() {
	if a.due != nil {
		a.due = nil
		a.timer.Stop()
	}
}

func (c *clientConn) readAheadLoop(a *readAhead, done chan struct{}, gone func()) {
	defer close(done)
	tmp := make([]byte, 1024)
	for {
		n, err := c.Conn.Read(tmp)
		stopped := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed)
		a.mu.Lock()
		if n > 0 {
			a.buf = append(a.buf, tmp[:n]...)
			c.wire.Add(uint64(n))
		}
		if err != nil && !stopped {
			a.err = err
		}
		end := err != nil || len(a.buf) >= maxReadAhead
		if end {
			a.running = false
		}
		a.mu.Unlock()
		if err != nil && !stopped {
			c.noteErr(err)
			gone()
		}
		if end {
			return
		}
	}
}

// takeAhead stops the read ahead if one runs and hands over what it read;
// ok is false when there is nothing to hand over, and the caller reads the
// connection itself.
func (c *clientConn) takeAhead(a *readAhead, b []byte) (n int, err error, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cancelDue()
	for a.running {
		_ = c.Conn.SetReadDeadline(aLongTimeAgo)
		done := a.done
		a.mu.Unlock()
		<-done
		a.mu.Lock()
		_ = c.Conn.SetReadDeadline(deadlineTime(c.deadline.Load()))
	}
	switch {
	case len(a.buf) > 0:
		n = copy(b, a.buf)
		a.buf = a.buf[n:]
		if len(a.buf) == 0 {
			a.buf = nil
		}
	case a.err != nil:
		return 0, a.err, true // as the connection would answer again
	default:
		a.pending.Store(false)
		return 0, nil, false
	}
	a.pending.Store(len(a.buf) > 0 || a.err != nil)
	return n, nil, true
}
