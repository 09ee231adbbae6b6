package proxywatch

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// unsentOf returns c's TCP_NOTSENT_LOWAT.
func unsentOf(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		n, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return n
}

// A client connection starts with the unsent limit, loses it while its
// reader takes bytes fast, and has it again once the reader slows down.
func TestUnsentLimitFollowsPace(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	tcp := accepted.(*net.TCPConn)
	tuneSocket(tcp)
	// Fixed buffers, so that the slow phase makes writes wait at once
	// rather than after the several MiB that autotuning gives a fast reader.
	if err := tcp.SetWriteBuffer(256 << 10); err != nil {
		t.Fatal(err)
	}
	if err := peer.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	c := &clientConn{Conn: tcp}
	defer c.Conn.Close()
	if got := unsentOf(t, tcp); got != unsentLimit {
		t.Fatalf("limit after accept: %d, want %d", got, unsentLimit)
	}

	slow := make(chan bool, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 256<<10)
		for {
			select {
			case s := <-slow:
				if s {
					for {
						if _, err := peer.Read(buf); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}
			default:
			}
			if _, err := peer.Read(buf); err != nil {
				return
			}
		}
	}()
	chunk := make([]byte, 64<<10)
	write := func(n int) {
		t.Helper()
		for range n / len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(16 << 20)
	if got := unsentOf(t, tcp); got != 0 {
		t.Errorf("limit after 16 MiB read as fast as loopback allows: %d, want 0 (lifted)", got)
	}
	slow <- true
	write(3 << 20)
	if got := unsentOf(t, tcp); got != unsentLimit {
		t.Errorf("limit after 3 MiB read at 2.5 MiB/s: %d, want %d", got, unsentLimit)
	}
	_ = peer.Close()
	<-done
	_, _ = io.Copy(io.Discard, peer)
}
