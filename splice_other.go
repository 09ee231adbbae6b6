//go:build !linux

package proxywatch

import "net"

// spliceCopy is copyCounted where there is no splice; splice_linux.go says
// what it does.
func spliceCopy(dst, src *net.TCPConn, count func(int64)) (n int64, readErr, writeErr error) {
	return copyCounted(dst, src, count)
}
