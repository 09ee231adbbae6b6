package proxywatch

import "net"

// unsentLimit is what a socket of the proxy may hold written but not yet
// sent (TCP_NOTSENT_LOWAT, where the system has it): 32 KiB. Without it
// Linux lets a slow reader's socket queue several MiB (its send buffer
// grows with the path), which the proxy would count as sent long before the
// reader has them, and which every slow reader holds in kernel memory. With
// it a write waits until the unsent part drains below half the limit, so
// counts follow the reader's pace and lead it by at most the limit plus what
// is in flight. The limit is only on what the network has not taken yet
// (Cloudflare runs its servers at 16 KiB); on loopback, where a bulk reader
// is CPU-bound, it would cost bulk throughput (BENCHMARKS.md): a client that
// proves fast has its limit lifted (lookAtPace).
const unsentLimit = 32 << 10

// tuneUnsent lifts c's unsent limit (the system's default applies) or sets
// it again, where c is TCP. A client connection's pace decides (lookAtPace).
func tuneUnsent(c net.Conn, lift bool) {
	if tc, ok := c.(*net.TCPConn); ok {
		if lift {
			limitUnsent(tc, 0)
		} else {
			limitUnsent(tc, unsentLimit)
		}
	}
}

// tuneSocket sets the proxy's options on a TCP connection it accepted or
// dialed; other connections are left alone. Failing options leave the
// connection usable, with the system's defaults.
func tuneSocket(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		limitUnsent(tc, unsentLimit)
	}
}

// resetOnClose makes the next close of c, where c is TCP, reset the
// connection (SO_LINGER 0): what the kernel still queued for the peer is
// dropped rather than delivered, and the peer sees the end at once, not after
// draining it. A close by the Proxy (by API, for idleness, at the end of
// Shutdown's grace) is such an end; a normal end stays a graceful close.
func resetOnClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}
