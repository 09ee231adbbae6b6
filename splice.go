package proxywatch

import (
	"io"
	"net"
)

// Tunnels keep the kernel's zero-copy path and are counted live at any speed.
// goproxy copies a tunnel with io.Copy between the two connections; the
// wrappers in tunnel.go implement io.ReaderFrom so that the copy reaches
// spliceCopy when both ends are bare *net.TCPConn. On Linux spliceCopy moves
// the bytes through a pipe of its own with splice(2) and counts each splice
// into the destination as it returns, so a count follows the destination's
// pace: a slow reader's tunnel is counted as it reads, a bulk one in slices
// of up to a pipe's size. Elsewhere it is a buffered copy counted per write.

// copyCounted copies src to dst through a pooled buffer until src's EOF or
// an error, as spliceCopy does where there is no splice or no pipe could be
// made.
func copyCounted(dst, src net.Conn, count func(int64)) (n int64, readErr, writeErr error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for {
		nr, err := src.Read(*buf)
		if nr > 0 {
			nw, werr := dst.Write((*buf)[:nr])
			if nw > 0 {
				n += int64(nw)
				count(int64(nw))
			}
			if werr != nil {
				return n, nil, werr
			}
		}
		switch {
		case err == io.EOF:
			return n, nil, nil
		case err != nil:
			return n, err, nil
		}
	}
}
