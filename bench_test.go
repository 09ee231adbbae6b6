package proxywatch_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/proxywatch/proxywatch"
)

// sideBySide runs work against bare goproxy and against proxywatch with its
// observers on, alternating in rounds within one benchmark run so both see
// the same machine load, and reports proxywatch's throughput as a ratio of
// bare goproxy's ("pw/bare"; 1.0 means no cost). Both proxies use the same
// transport settings, so the ratio is the cost of observing.
func sideBySide(b *testing.B, work func(b *testing.B, proxy *url.URL)) {
	bareGP := goproxy.NewProxyHttpServer()
	bareGP.Tr = &http.Transport{MaxIdleConnsPerHost: 64}
	bareGP.Logger = discard{}
	bare := httptest.NewServer(bareGP)
	defer bare.Close()

	pwGP := goproxy.NewProxyHttpServer()
	pwGP.Tr = &http.Transport{MaxIdleConnsPerHost: 64}
	p := proxywatch.New(&proxywatch.Options{GoProxy: pwGP, LogLevel: levelInfo})
	stop := p.Observe(observeAll())
	defer stop()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(l)
	defer p.Close()

	bareURL, _ := url.Parse(bare.URL)
	pwURL, _ := url.Parse("http://" + l.Addr().String())
	var tBare, tPW time.Duration
	const rounds = 6
	b.ResetTimer()
	for i := 0; i < rounds; i++ {
		start := time.Now()
		work(b, bareURL)
		tBare += time.Since(start)
		start = time.Now()
		work(b, pwURL)
		tPW += time.Since(start)
	}
	if tPW > 0 {
		b.ReportMetric(float64(tBare)/float64(tPW), "pw/bare")
	}
}

type discard struct{}

func (discard) Printf(string, ...any) {}

var levelInfo = slog.LevelInfo

func BenchmarkSideBySideSmallHTTP(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(payload(1024))
	}))
	defer up.Close()
	sideBySide(b, func(b *testing.B, proxy *url.URL) {
		c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy), MaxIdleConnsPerHost: 8}}
		defer c.CloseIdleConnections()
		var wg sync.WaitGroup
		per := max(b.N*20/8, 1)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					resp, err := c.Get(up.URL)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
	})
}

func BenchmarkSideBySideDownload(b *testing.B) {
	big := payload(8 << 20)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Write(big)
	}))
	defer up.Close()
	b.SetBytes(int64(len(big)))
	sideBySide(b, func(b *testing.B, proxy *url.URL) {
		c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
		defer c.CloseIdleConnections()
		for i := 0; i < max(b.N, 1); i++ {
			resp, err := c.Get(up.URL)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

func BenchmarkSideBySideTunnel(b *testing.B) {
	echo := echoServer(b)
	const size = 8 << 20
	b.SetBytes(2 * size)
	sideBySide(b, func(b *testing.B, proxy *url.URL) {
		for i := 0; i < max(b.N, 1); i++ {
			c := rawConnect(b, proxy, echo.Addr().String())
			go func() {
				buf := payload(64 << 10)
				for sent := 0; sent < size; sent += len(buf) {
					c.Write(buf)
				}
				c.(*net.TCPConn).CloseWrite()
			}()
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			if n != size {
				b.Fatalf("echoed %d of %d bytes", n, size)
			}
		}
	})
}

// observeAll is an observer of every kind that does nothing with what it
// gets: the cost of observation, not of an observer's work.
func observeAll() any {
	return struct {
		proxywatch.TrafficObserverFunc
		proxywatch.ConnObserverFunc
		proxywatch.LogObserverFunc
	}{func(proxywatch.TrafficSample) {}, func(proxywatch.ConnEvent) {}, func(proxywatch.LogRecord) {}}
}

// BenchmarkIdleTunnelMemory measures what proxywatch holds for each live
// connection beyond what goproxy itself holds. Each round opens
// idleTunnels idle CONNECT tunnels through bare goproxy and then through a
// Proxy whose traffic, connections and logs are observed, both in this
// process and with the same transport, and reads the growth of the live heap
// and of the goroutine stacks (after GC) per tunnel. It reports the medians
// over the rounds: B/tunnel of each, "extra-heap-B/tunnel", proxywatch's
// heap minus goproxy's, and "extra-B/tunnel", heap and stacks (the target is
// under 1 KiB). The client and upstream ends of the tunnels are in both
// readings and cancel out. Goroutine stacks start at a size the runtime
// adapts to the process's goroutines, which makes them the noisier part.
// A round that is not measured comes first, so that what either proxy
// allocates once (pools, and the maps that index live connections, which
// keep their size once grown) is not counted per tunnel.
//
//	go test -run '^$' -bench IdleTunnelMemory -benchtime 5x .
func BenchmarkIdleTunnelMemory(b *testing.B) {
	const idleTunnels = 500
	up := echoServer(b) // holds each tunnel open until its client closes it

	bareGP := goproxy.NewProxyHttpServer()
	bareGP.Tr = proxywatch.New(nil).GoProxy().Tr
	bareGP.Logger = discard{}
	bareL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bareSrv := &http.Server{Handler: bareGP}
	go bareSrv.Serve(bareL)
	defer bareSrv.Close()

	pwGP := goproxy.NewProxyHttpServer()
	pwGP.Tr = bareGP.Tr
	p := proxywatch.New(&proxywatch.Options{GoProxy: pwGP})
	stop := p.Observe(observeAll())
	defer stop()
	pwL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go p.Serve(pwL)
	defer p.Close()

	// open opens the tunnels through proxy and returns the growth of heap
	// and stacks per tunnel once they idle, and a function that closes them.
	open := func(proxy string) (heap, stack float64, closeAll func()) {
		u := &url.URL{Host: proxy}
		before := settledMem()
		conns := make([]net.Conn, 0, idleTunnels)
		for range idleTunnels {
			conns = append(conns, rawConnect(b, u, up.Addr().String()))
		}
		after := settledMem()
		heap = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / idleTunnels
		stack = float64(int64(after.StackInuse)-int64(before.StackInuse)) / idleTunnels
		return heap, stack, func() {
			for _, c := range conns {
				c.Close()
			}
		}
	}
	waitLive := func(want int) {
		for deadline := time.Now().Add(10 * time.Second); p.Stats().Live != want; {
			if time.Now().After(deadline) {
				b.Fatalf("%d live connections, want %d", p.Stats().Live, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// A first round that is not measured: what either proxy allocates once
	// (pools, tables grown for the first time) must not count as per tunnel.
	_, _, closeBare := open(bareL.Addr().String())
	closeBare()
	_, _, closePW := open(pwL.Addr().String())
	closePW()
	waitLive(0)

	var bareHeap, bareStack, pwHeap, pwStack, extra, extraHeap []float64
	for b.Loop() {
		h, s, closeBare := open(bareL.Addr().String())
		bareHeap, bareStack = append(bareHeap, h), append(bareStack, s)
		closeBare()

		h, s, closePW := open(pwL.Addr().String())
		pwHeap, pwStack = append(pwHeap, h), append(pwStack, s)
		if st := p.Stats(); st.Live != idleTunnels {
			b.Fatalf("%d live connections with %d tunnels open", st.Live, idleTunnels)
		}
		closePW()
		waitLive(0)
		last := len(extra)
		extraHeap = append(extraHeap, pwHeap[last]-bareHeap[last])
		extra = append(extra, pwHeap[last]+pwStack[last]-bareHeap[last]-bareStack[last])
	}
	b.StopTimer()
	// Every tunnel was a connection, opened and closed: nothing was left
	// untracked to make the figure small.
	if st := p.Stats(); st.Opened != uint64((b.N+1)*idleTunnels) || st.Closed != st.Opened {
		b.Fatalf("Stats: opened %d, closed %d; want %d each", st.Opened, st.Closed, (b.N+1)*idleTunnels)
	}
	b.ReportMetric(median(bareHeap), "bare-heap-B/tunnel")
	b.ReportMetric(median(bareStack), "bare-stack-B/tunnel")
	b.ReportMetric(median(pwHeap), "pw-heap-B/tunnel")
	b.ReportMetric(median(pwStack), "pw-stack-B/tunnel")
	b.ReportMetric(median(extraHeap), "extra-heap-B/tunnel")
	b.ReportMetric(median(extra), "extra-B/tunnel")
}

// settledMem lets the proxies' goroutines reach their idle state, collects
// garbage and returns the memory statistics.
func settledMem() runtime.MemStats {
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
