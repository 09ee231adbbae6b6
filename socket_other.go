//go:build !linux

package proxywatch

import "net"

// limitUnsent does nothing where TCP_NOTSENT_LOWAT is not known to proxywatch:
// counts then lead a slow reader by up to its socket's send buffer (package
// documentation, # Counting).
func limitUnsent(*net.TCPConn, int) {}
