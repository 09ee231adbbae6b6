//go:build !linux

package proxywatch

import "net"

// spliceCopy copies src to dst until src's EOF or an error, calling count
// with the bytes of each write to dst. It returns the bytes copied and the
// error of reading src or of writing dst (at most one is set): the copy
// knows which side failed, where an error of io.Copy would not say.
func spliceCopy(dst, src *net.TCPConn, count func(int64)) (n int64, readErr, writeErr error) {
	return copyCounted(dst, src, count)
}
