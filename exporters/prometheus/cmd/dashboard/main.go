// Command dashboard is examples/dashboard with a -metrics flag: it also serves
// the proxy's metrics for Prometheus at http://ADDR/metrics. It lives in the
// exporter's module so that the root module does not depend on Prometheus.
//
//	cd exporters/prometheus && go run ./cmd/dashboard -metrics 127.0.0.1:9100
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/examples/dashboard/app"
	pwprom "github.com/proxywatch/proxywatch/exporters/prometheus"
)

func main() {
	var addr string
	app.Main(&app.Extension{
		Flags: func(fl *flag.FlagSet) {
			fl.StringVar(&addr, "metrics", "127.0.0.1:9100", "`ADDR` serving /metrics for Prometheus (empty: none)")
		},
		Start: func(p *proxywatch.Proxy) (func(), error) {
			if addr == "" {
				return func() {}, nil
			}
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return nil, err
			}
			fmt.Printf("metrics:   http://%s/metrics\n", l.Addr())
			return serveMetrics(p, l), nil
		},
	})
}

// serveMetrics serves p's metrics, plus the Go runtime's, at /metrics on l.
func serveMetrics(p *proxywatch.Proxy, l net.Listener) (stop func()) {
	c := pwprom.New(p, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	unobserve := p.Observe(c)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("metrics:", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		unobserve()
	}
}
