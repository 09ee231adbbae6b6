package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	slowScenario = "slow-clients"
	slowWhat     = "endless plain-HTTP downloads read at 10 KB/s each, 1000 clients (-slow-clients): proxy RSS and the kernel's TCP memory"
)

// A slow client reads slowRead bytes every slowEvery: 10 KB/s.
const (
	slowRead  = 500
	slowEvery = 50 * time.Millisecond
)

// slowSample is one run of the slow-clients scenario against one proxy.
type slowSample struct {
	rss, rssGrowth int64 // the proxy's resident set (VmRSS) and its growth, bytes
	tcpMem         int64 // growth of the kernel's TCP memory (all sockets), bytes
	pressure       bool  // the kernel's TCP memory reached its pressure threshold
	readRate       float64
	// What the sockets hold, from /proc/net/tcp, in bytes: written by the
	// proxy to its clients and not yet taken by them; received by the
	// proxy from the upstream and not yet read; received by the clients
	// and not yet read; written by the upstream and not yet taken.
	toClients, fromUpstream, inClients, inUpstream int64
	errs                                           int64
	firstErr                                       error
}

// slowClients runs n clients through t, each downloading the slow
// upstream's endless body and reading it at 10 KB/s from the raw connection,
// with the system's default receive buffer, so that the kernel's autotuning
// is in the picture, as on a real network. After settle it reads the proxy's
// RSS, the growth of the kernel's TCP memory since before the clients
// connected and the sockets' queues. It then closes every client and returns
// once the proxy's and the upstream's connections are gone and the bench's
// goroutines for them have ended.
func slowClients(e *env, t *target, n int, settle time.Duration) (s slowSample, err error) {
	if err := ensureFiles(t, n); err != nil {
		return s, err
	}
	proxyPort, err := portOf(t.proxy.Host)
	if err != nil {
		return s, err
	}
	upPort, err := portOf(e.up.slow)
	if err != nil {
		return s, err
	}
	before, err := readTCPSockets()
	if err != nil {
		return s, err
	}
	proxyBefore, upBefore := countSockets(before, proxyPort, upPort)
	// The proxy gives what it can back to the system first, so that its
	// growth is the clients' and not garbage left by earlier scenarios.
	_ = t.child.command("free-memory", nil)
	rss0 := int64(t.child.status("VmRSS"))
	mem0, err := tcpMemory()
	if err != nil {
		return s, err
	}

	var (
		wg       sync.WaitGroup
		read     atomic.Int64
		errs     atomic.Int64
		stopping atomic.Bool
		mu       sync.Mutex
		firstErr error
		conns    []net.Conn
	)
	fail := func(err error) {
		if stopping.Load() {
			return
		}
		errs.Add(1)
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopping.Store(true)
		for _, c := range conns {
			_ = c.Close() // unread bytes make it a reset: the proxy sees it at once
		}
		wg.Wait()
		return waitGone(e.up.slowSrv, proxyPort, upPort, proxyBefore, upBefore)
	}
	defer func() {
		if serr := stop(); err == nil {
			err = serr
		}
	}()

	req := "GET http://" + e.up.slow + "/big?n=" + strconv.Itoa(endless) + " HTTP/1.1\r\nHost: " + e.up.slow + "\r\n\r\n"
	for i := range n {
		c, err := net.Dial("tcp", t.proxy.Host)
		if err != nil {
			return s, fmt.Errorf("client %d of %d: %v", i+1, n, err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, req); err != nil {
			return s, fmt.Errorf("client %d of %d: %v", i+1, n, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the clients' reads over the interval.
			readSlowly(c, time.Duration(i)*slowEvery/time.Duration(n), &read, fail)
		}()
	}

	read0, t0 := read.Load(), time.Now()
	time.Sleep(settle)
	if s.tcpMem, s.pressure, err = tcpMemorySince(mem0); err != nil {
		return s, err
	}
	socks, err := readTCPSockets()
	if err != nil {
		return s, err
	}
	s.rss = int64(t.child.status("VmRSS"))
	s.rssGrowth = s.rss - rss0
	s.readRate = float64(read.Load()-read0) / time.Since(t0).Seconds() / float64(n)
	for _, k := range socks {
		if k.state == tcpListen {
			continue
		}
		switch {
		case k.local == proxyPort:
			s.toClients += k.tx
		case k.remote == proxyPort:
			s.inClients += k.rx
		case k.remote == upPort:
			s.fromUpstream += k.rx
		case k.local == upPort:
			s.inUpstream += k.tx
		}
	}
	if err := stop(); err != nil {
		return s, err
	}
	s.errs = errs.Load()
	s.firstErr = firstErr
	return s, nil
}

// readSlowly reads c at 10 KB/s until c is closed, after waiting offset.
// The response must be a 200; bytes read, head included, are added to read.
func readSlowly(c net.Conn, offset time.Duration, read *atomic.Int64, fail func(error)) {
	time.Sleep(offset)
	tick := time.NewTicker(slowEvery)
	defer tick.Stop()
	buf := make([]byte, slowRead)
	var head []byte // until the end of the response's head
	for first := true; ; first = false {
		if !first {
			<-tick.C
		}
		n, err := io.ReadFull(c, buf)
		read.Add(int64(n))
		if head != nil || first {
			head = append(head, buf[:n]...)
			if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
				if line, _, _ := bytes.Cut(head, []byte("\r\n")); !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
					fail(fmt.Errorf("response %q", line))
					return
				}
				head = nil
			} else if len(head) > 16<<10 {
				fail(errors.New("no end of the response's head in 16 KiB"))
				return
			}
		}
		if err != nil {
			fail(err)
			return
		}
	}
}

// waitGone waits, for at most 30 seconds, until no more connections to the
// proxy's port or to the slow upstream's are open than before the scenario,
// and the upstream server has closed all of its own.
func waitGone(up *slowListener, proxyPort, upPort, proxyBefore, upBefore int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		socks, err := readTCPSockets()
		if err != nil {
			return err
		}
		p, u := countSockets(socks, proxyPort, upPort)
		served := up.open.Load()
		if p <= proxyBefore && u <= upBefore && served == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("30 s after the slow clients closed, %d sockets of connections to the proxy, %d to the upstream and %d of the upstream server's are still open", p-proxyBefore, u-upBefore, served)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ensureFiles makes sure that this process and t's child may each open two
// descriptors per client beyond those they have (a client's socket and the
// upstream's here; a client's and the upstream connection there), raising
// this process's soft limit when it is lower. The child is a Go program,
// which raises its own soft limit to the hard limit it inherited.
func ensureFiles(t *target, n int) error {
	const spare = 64
	need := uint64(openFiles("self") + 2*n + spare)
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < need {
		if l.Max < need {
			return fmt.Errorf("%d slow clients need %d open files in this process, and its hard limit (ulimit -Hn) is %d", n, need, l.Max)
		}
		l.Cur = need
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("raising the open files limit to %d for %d slow clients: %v", need, n, err)
		}
	}
	pid := strconv.Itoa(t.child.cmd.Process.Pid)
	childNeed := uint64(openFiles(pid) + 2*n + spare)
	if lim, ok := softFileLimit(pid); ok && lim < childNeed {
		return fmt.Errorf("%d slow clients need %d open files in the %s child, and it may open %d", n, childNeed, t.name, lim)
	}
	return nil
}

// openFiles is how many descriptors the process has open (0 where /proc does
// not tell).
func openFiles(pid string) int {
	fds, _ := os.ReadDir("/proc/" + pid + "/fd")
	return len(fds)
}

// softFileLimit is the process's soft limit of open files, from
// /proc/<pid>/limits.
func softFileLimit(pid string) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/limits")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0, false
			}
			n, err := strconv.ParseUint(f[0], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// tcpMemory returns the kernel's TCP memory in pages: the mem field of
// /proc/net/sockstat's TCP line.
func tcpMemory() (int64, error) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, fmt.Errorf("the slow-clients scenario reads the kernel's TCP memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				return strconv.ParseInt(f[i+1], 10, 64)
			}
		}
	}
	return 0, errors.New("no TCP mem in /proc/net/sockstat")
}

// tcpMemorySince returns the growth of the kernel's TCP memory in bytes since
// it was base pages, and whether it has reached the pressure threshold
// (net.ipv4.tcp_mem's second value), above which the kernel shrinks buffers.
func tcpMemorySince(base int64) (growth int64, pressure bool, err error) {
	now, err := tcpMemory()
	if err != nil {
		return 0, false, err
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_mem"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			limit, _ := strconv.ParseInt(f[1], 10, 64)
			pressure = limit > 0 && now >= limit
		}
	}
	return (now - base) * int64(os.Getpagesize()), pressure, nil
}

// tcpSocket is one IPv4 TCP socket of /proc/net/tcp.
type tcpSocket struct {
	local, remote int   // ports
	state         int   // the kernel's TCP state: tcpListen, or one of a connection's
	owned         bool  // a process has it open (it has an inode); not one the kernel ends alone
	tx, rx        int64 // bytes written and not yet acknowledged; received and not yet read
}

// tcpListen is the kernel's TCP_LISTEN state.
const tcpListen = 10

// open reports whether the socket is a connection some process still has
// open.
func (k tcpSocket) open() bool { return k.owned && k.state != tcpListen }

func readTCPSockets() ([]tcpSocket, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, fmt.Errorf("the slow-clients scenario reads the sockets' queues: %v", err)
	}
	// sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode ...
	lines := strings.Split(string(b), "\n")
	out := make([]tcpSocket, 0, len(lines))
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		var k tcpSocket
		k.local, k.remote = hexPort(f[1]), hexPort(f[2])
		state, _ := strconv.ParseInt(f[3], 16, 0)
		k.state = int(state)
		tx, rx, _ := strings.Cut(f[4], ":")
		k.tx, _ = strconv.ParseInt(tx, 16, 64)
		k.rx, _ = strconv.ParseInt(rx, 16, 64)
		k.owned = len(f) > 9 && f[9] != "0"
		out = append(out, k)
	}
	return out, nil
}

// hexPort is the port of an address of /proc/net/tcp ("0100007F:1F90").
func hexPort(addr string) int {
	_, p, _ := strings.Cut(addr, ":")
	n, _ := strconv.ParseInt(p, 16, 0)
	return int(n)
}

// countSockets counts the open sockets of connections to the proxy's port
// and to the upstream's, on both ends.
func countSockets(socks []tcpSocket, proxyPort, upPort int) (proxy, up int) {
	for _, k := range socks {
		if !k.open() {
			continue
		}
		switch {
		case k.local == proxyPort || k.remote == proxyPort:
			proxy++
		case k.local == upPort || k.remote == upPort:
			up++
		}
	}
	return proxy, up
}

func portOf(hostport string) (int, error) {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}

// tcpNotsentLowat is Linux's TCP_NOTSENT_LOWAT, which package syscall does
// not name.
const tcpNotsentLowat = 25

// limitUnsent sets c's TCP_NOTSENT_LOWAT to n bytes on Linux, and does
// nothing elsewhere.
func limitUnsent(c *net.TCPConn, n int) {
	if runtime.GOOS != "linux" {
		return
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat, n)
	})
}
