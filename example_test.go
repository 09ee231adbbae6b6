package proxywatch_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/proxywatch/proxywatch"
)

// Embed the proxy, send one request through it, and read what it counted.
func ExampleNew() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello, proxy")
	}))
	defer upstream.Close()

	p := proxywatch.New(nil)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(l)
	defer p.Close()

	proxyURL, _ := url.Parse("http://" + l.Addr().String())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	resp, err := c.Post(upstream.URL, "text/plain", strings.NewReader("ping"))
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.Shutdown(context.Background()) // waits for live connections, delivers every event

	for _, conn := range p.History() {
		fmt.Println(conn.Protocol, conn.Method, conn.Status, conn.EndReason, "up", conn.Up, "down", conn.Down)
	}
	st := p.Stats()
	up, down := st.Up, st.Down
	fmt.Println("totals", up, down)
	// Output:
	// HTTP POST 200 completed up 4 down 12
	// totals 4 12
}

// A ConnObserver sees every connection open and close, with its final bytes.
func ExampleConnObserverFunc() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "0123456789")
	}))
	defer upstream.Close()

	p := proxywatch.New(&proxywatch.Options{
		Conns: proxywatch.ConnObserverFunc(func(e proxywatch.ConnEvent) {
			fmt.Println(e.State, e.Conn.Method, e.Conn.Down)
		}),
	})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(l)

	proxyURL, _ := url.Parse("http://" + l.Addr().String())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	resp, err := c.Get(upstream.URL)
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.Shutdown(context.Background()) // returns once queued events were delivered
	// Output:
	// opened GET 0
	// closed GET 10
}
