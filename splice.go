package proxywatch

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// Tunnels keep the kernel's zero-copy path. goproxy copies a tunnel with
// io.Copy between the two connections, which on Linux splices socket to
// socket when both ends are bare *net.TCPConn. The wrappers below implement
// io.ReaderFrom so that io.Copy still reaches splice, in bounded slices so
// that counts stay live: a slice ends after spliceChunk bytes or after
// spliceSlice of time, whichever comes first, and its bytes are counted then.
const (
	spliceChunk = 4 << 20
	spliceSlice = 250 * time.Millisecond
)

// spliceCopy copies src to dst until EOF or an error, counting each slice.
// A slice that moved nothing means this direction of the tunnel is idle: the
// copy then waits for src to have bytes (waitReadable) before slicing again,
// so that an idle tunnel costs no wake-up at all. Woken every slice, 1000
// idle tunnels would keep a tenth of a core busy.
func spliceCopy(dst, src *net.TCPConn, count func(int64)) (int64, error) {
	var total int64
	defer src.SetReadDeadline(time.Time{})
	for {
		_ = src.SetReadDeadline(time.Now().Add(spliceSlice))
		n, err := dst.ReadFrom(&io.LimitedReader{R: src, N: spliceChunk})
		if n > 0 {
			total += n
			count(n)
		}
		switch {
		case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
			if n == 0 {
				if err := waitReadable(src); err != nil {
					return total, err
				}
			}
			continue // the slice ended: count and go on
		case err != nil:
			return total, err
		case n < spliceChunk:
			return total, nil // EOF
		}
	}
}

// peerFailed reports whether writing to c fails, after a splice into c
// failed. A splice's error does not say which side it came from: reading the
// source or writing c. A write of no bytes still reports a reset or closed
// peer (on Linux, where splice is used), so it tells whose the failure was.
func peerFailed(c *net.TCPConn) bool {
	_, err := c.Write(nil)
	return err != nil
}
