//go:build !linux

package proxywatch

import "net"

// waitReadable returns at once where there is no splice: tunnels are then
// copied through a buffer in slices, as on Linux.
func waitReadable(*net.TCPConn) error { return nil }
