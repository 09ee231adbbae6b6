package proxywatch_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
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
