// Command loadclient holds thousands of live connections open through a
// proxy, for the dashboard's load test (e2e/load.e2e.mjs). It is a separate
// process so that its sockets count against its own open-file limit, not the
// proxy's or the test runner's.
//
//	go run ./examples/dashboard/ui/e2e/loadclient -proxy 127.0.0.1:8080 -n 9000
//
// It starts its own upstream HTTP servers on loopback and opens n
// connections to them through the proxy, each a download that never ends and
// moves size bytes every interval (from a random phase), so that every row of
// the dashboard has live counts and rates. With -mode http (the default) they
// are plain HTTP requests; with -mode tunnel, CONNECT tunnels carrying such a
// request. It prints, one per line:
//
//	upstreams [ADDR...]  the upstream servers' addresses
//	opened N             progress while opening
//	ready N SECONDS      all n connections are established
//	closed N             how many of them the proxy has ended so far
//
// and exits when its standard input closes or on SIGINT/SIGTERM.
//
// On Linux a tunnel costs a Go proxy six descriptors, not two: while a
// tunnel waits for data, each direction's splice holds a pipe pair. With the
// usual 20,000 open files per process, about 3,300 tunnels fit, and 9,000
// plain downloads.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	proxy := flag.String("proxy", "127.0.0.1:8080", "proxy `ADDR`")
	n := flag.Int("n", 1000, "number of connections")
	mode := flag.String("mode", "http", "http (plain downloads) or tunnel (CONNECT tunnels)")
	upstreams := flag.Int("upstreams", 4, "number of upstream servers")
	interval := flag.Duration("interval", time.Second, "how often each download moves bytes")
	size := flag.Int("size", 256, "bytes each download moves per interval")
	parallel := flag.Int("parallel", 64, "connections opened at a time")
	flag.Parse()
	if *mode != "http" && *mode != "tunnel" {
		fmt.Fprintln(os.Stderr, "loadclient: -mode is http or tunnel")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// Owned by the process: standard input closing means the test is done.
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	l := &load{interval: *interval, size: *size, tunnel: *mode == "tunnel"}
	err := l.run(ctx, *proxy, *n, *upstreams, *parallel)
	l.shutdown()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadclient:", err)
		os.Exit(1)
	}
}

// load holds every socket and goroutine of the run; shutdown closes the
// sockets and waits for the goroutines.
type load struct {
	interval time.Duration
	size     int
	tunnel   bool

	mu       sync.Mutex
	conns    []net.Conn
	servers  []*http.Server
	stopping bool

	closed atomic.Int64 // connections ended by the other side
	wg     sync.WaitGroup
}

// track registers a client socket to close at shutdown; it reports false
// (and closes c) when shutdown has begun.
func (l *load) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		c.Close()
		return false
	}
	l.conns = append(l.conns, c)
	return true
}

func (l *load) run(ctx context.Context, proxy string, n, upstreams, parallel int) error {
	addrs := make([]string, 0, upstreams)
	for range upstreams {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(l.download), ReadHeaderTimeout: 10 * time.Second}
		l.mu.Lock()
		l.servers = append(l.servers, srv)
		l.mu.Unlock()
		addrs = append(addrs, ln.Addr().String())
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			_ = srv.Serve(ln) // until shutdown closes it
		}()
	}
	fmt.Println("upstreams", addrs)

	start := time.Now()
	jobs := make(chan int)
	errc := make(chan error, parallel)
	var opened atomic.Int64
	var workers sync.WaitGroup
	for range parallel {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range jobs {
				if err := l.open(proxy, addrs[i%len(addrs)], i); err != nil {
					errc <- err
					return
				}
				if k := opened.Add(1); k%1000 == 0 {
					fmt.Println("opened", k)
				}
			}
		}()
	}
	var err error
feed:
	for i := range n {
		select {
		case jobs <- i:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	workers.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	if err != nil {
		return fmt.Errorf("after %d connections: %w", opened.Load(), err)
	}
	fmt.Printf("ready %d %.1f\n", opened.Load(), time.Since(start).Seconds())

	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if c := l.closed.Load(); c != last {
				last = c
				fmt.Println("closed", c)
			}
		}
	}
}

// open starts download number i from addr through the proxy, plainly or
// through a CONNECT tunnel, and reads its response headers.
func (l *load) open(proxy, addr string, i int) error {
	c, err := net.DialTimeout("tcp", proxy, 10*time.Second)
	if err != nil {
		return err
	}
	if !l.track(c) {
		return net.ErrClosed
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	target := fmt.Sprintf("http://%s/stream/%d", addr, i)
	if l.tunnel {
		if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("CONNECT %s: %s", addr, resp.Status)
		}
		target = fmt.Sprintf("/stream/%d", i) // origin form inside the tunnel
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: proxywatch-loadclient\r\n\r\n", target, addr); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", target, resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	l.wg.Add(1)
	go l.read(resp.Body)
	return nil
}

// read drains a download until the proxy ends it.
func (l *load) read(body io.Reader) {
	defer l.wg.Done()
	_, _ = io.Copy(io.Discard, body) // the body never ends on its own
	l.mu.Lock()
	stopping := l.stopping
	l.mu.Unlock()
	if !stopping {
		l.closed.Add(1)
	}
}

// download is the upstream: an event stream that never ends, an event of
// size bytes every interval from a random phase, so that the downloads do
// not all move in the same instant. An event stream because goproxy flushes
// each write of one to the client; other bodies it buffers up to 4 KiB, and a
// trickle would reach the client in bursts many seconds apart.
func (l *load) download(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	// A comment line at once: the proxy sends the response headers with the
	// first bytes of the body, not before.
	if _, err := io.WriteString(w, ": open\n\n"); err != nil {
		return
	}
	if flusher != nil {
		flusher.Flush()
	}
	payload := []byte("data: " + strings.Repeat("d", max(l.size-8, 1)) + "\n\n")
	t := time.NewTimer(time.Duration(rand.Int64N(int64(l.interval))))
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			if _, err := w.Write(payload); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
			t.Reset(l.interval)
		}
	}
}

// shutdown closes the servers and every client socket, and waits for the
// goroutines.
func (l *load) shutdown() {
	l.mu.Lock()
	l.stopping = true
	for _, s := range l.servers {
		s.Close()
	}
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
	l.mu.Unlock()
	l.wg.Wait()
}
