package proxywatch

import (
	"net"
	"syscall"
	"time"
)

// waitReadable blocks, with no deadline, until c has bytes to read, has
// reached EOF or has failed, without reading anything: the splice that
// follows finds what there is. It returns early only when c is closed.
func waitReadable(c *net.TCPConn) error {
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		for {
			// Peek rather than wait at once: a readiness the poller saw
			// before this call may have been reset, and bytes already
			// queued raise no new event.
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // nothing yet: wait for the poller
			}
			return true // bytes, EOF or an error: the splice will see which
		}
	})
}
