package proxywatch

import (
	"net"
	"os"
	"syscall"
)

// splice(2) flags, which package syscall does not name.
const (
	spliceMove     = 0x1
	spliceNonblock = 0x2
)

// pipeSize is the size spliceCopy asks for its pipe, the most one splice
// moves: 1 MiB, the default of /proc/sys/fs/pipe-max-size, as Go's own
// splice does. A smaller pipe (the system refused) only costs more calls.
const pipeSize = 1 << 20

// spliceCopy copies src to dst until src's EOF or an error, calling count
// with the bytes of each write to dst. It returns the bytes copied and the
// error of reading src or of writing dst (at most one is set): the copy
// knows which side failed, where an error of io.Copy would not say.
func spliceCopy(dst, src *net.TCPConn, count func(int64)) (n int64, readErr, writeErr error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return copyCounted(dst, src, count) // out of descriptors: copy without
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, uintptr(p[0]), syscall.F_SETPIPE_SZ, pipeSize)
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, err, nil
	}
	wc, err := dst.SyscallConn()
	if err != nil {
		return 0, nil, err
	}
	for {
		// The pipe is empty: fill it from src, waiting on the poller (no
		// deadline, no wake-up) while src has nothing.
		in, err := splice(rc.Read, p[1], pipeSize, true)
		if err != nil {
			return n, err, nil
		}
		if in == 0 {
			return n, nil, nil // EOF
		}
		// Drain it into dst, counting each splice.
		for in > 0 {
			m, err := splice(wc.Write, p[0], int(in), false)
			if m > 0 {
				n += m
				in -= m
				count(m)
			}
			if err != nil {
				return n, nil, err
			}
		}
	}
}

// splice moves at most max bytes between a socket and a pipe end with one
// splice(2), through the socket's poller: wait is the socket's RawConn Read
// (the socket is the source, pipe the destination) or Write (the other way),
// which waits for the socket while splice says EAGAIN.
func splice(wait func(func(fd uintptr) bool) error, pipe, max int, fromSocket bool) (int64, error) {
	var n int64
	var serr error
	err := wait(func(fd uintptr) bool {
		for {
			if fromSocket {
				n, serr = syscall.Splice(int(fd), nil, pipe, nil, max, spliceMove|spliceNonblock)
			} else {
				n, serr = syscall.Splice(pipe, nil, int(fd), nil, max, spliceMove|spliceNonblock)
			}
			if serr != syscall.EINTR {
				return serr != syscall.EAGAIN
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, os.NewSyscallError("splice", serr)
	}
	return n, nil
}
