package prometheus_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/proxywatch/proxywatch"
	pwprom "github.com/proxywatch/proxywatch/exporters/prometheus"
)

// A proxy whose metrics are served on /metrics. One request goes through it,
// then the scrape shows its bytes and how it ended.
func ExampleNew() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello through the proxy")
	}))
	defer upstream.Close()

	p := proxywatch.New(nil)
	c := pwprom.New(p, nil)
	stop := p.Observe(c)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	metrics := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer metrics.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(l) }()
	defer func() { p.Close(); <-served }()

	proxyURL, _ := url.Parse("http://" + l.Addr().String())
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(upstream.URL)
	if err != nil {
		panic(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// Wait until the exchange has ended, and let stop deliver its events, so
	// that the output is the same on every run. A real program does neither.
	for len(p.Connections()) > 0 {
		time.Sleep(time.Millisecond)
	}
	stop()

	scrape, err := http.Get(metrics.URL)
	if err != nil {
		panic(err)
	}
	defer scrape.Body.Close()
	lines := bufio.NewScanner(scrape.Body)
	for lines.Scan() {
		line := lines.Text()
		if strings.HasPrefix(line, "proxywatch_bytes_total") || strings.HasPrefix(line, "proxywatch_connections_closed_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// proxywatch_bytes_total{direction="down"} 23
	// proxywatch_bytes_total{direction="up"} 0
	// proxywatch_connections_closed_total{protocol="HTTP",reason="completed"} 1
}

// Per-host series are opt-in and bounded. Here TopHosts is 2 and four hosts
// end connections: the first two take the two labels, the heavy one later
// takes the label of the lightest, and the rest count as "other". The events
// are given by hand to show the labels; in a program, p.Observe(c) feeds them.
func ExampleOptions_topHosts() {
	c := pwprom.New(nil, &pwprom.Options{TopHosts: 2})
	end := func(host string, down uint64) {
		c.ObserveConn(proxywatch.ConnEvent{State: proxywatch.ConnClosed, Conn: proxywatch.ConnInfo{
			Protocol: proxywatch.ProtoTunnel, Host: host, Down: down, EndReason: proxywatch.EndCompleted,
		}})
	}
	end("a.example:443", 5000)
	end("b.example:443", 100)
	end("c.example:443", 50)       // not heavier than b: other
	end("big.example:443", 90_000) // heavier than b: takes its label
	end("b.example:443", 100)      // b is other now

	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range fams {
		if f.GetName() != "proxywatch_host_connections_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			fmt.Println(m.GetLabel()[0].GetValue(), m.GetCounter().GetValue())
		}
	}
	// Output:
	// a.example:443 1
	// big.example:443 1
	// other 2
}
