package proxywatch

import (
	"net"
	"syscall"
)

// tcpNotsentLowat is TCP_NOTSENT_LOWAT (Linux 3.12), which package syscall
// does not name.
const tcpNotsentLowat = 25

// limitUnsent sets c's TCP_NOTSENT_LOWAT to n bytes; 0 means the
// system's default (net.ipv4.tcp_notsent_lowat, unlimited unless set).
func limitUnsent(c *net.TCPConn, n int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat, n)
	})
}
