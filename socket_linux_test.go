package proxywatch_test

import (
	"syscall"
)

// ethernetMSS makes a socket announce the MSS of an Ethernet path (1460
// bytes) rather than loopback's 64 KiB, so that its peer sends it segments
// of a real network's size and its receive window opens in steps of that
// size: on loopback a slow reader's window opens 64 KiB or more at once. It
// is a net.Dialer's or net.ListenConfig's Control.
func ethernetMSS(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1460)
	})
	if err != nil {
		return err
	}
	return serr
}
