//go:build !linux

package proxywatch_test

import "syscall"

// ethernetMSS leaves the socket alone where the tests do not set TCP_MAXSEG.
func ethernetMSS(_, _ string, _ syscall.RawConn) error { return nil }
