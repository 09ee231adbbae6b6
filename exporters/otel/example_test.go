package otel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/proxywatch/proxywatch"
	pwotel "github.com/proxywatch/proxywatch/exporters/otel"
)

// A proxy whose metrics go to an OpenTelemetry MeterProvider. One request goes
// through it; then a collection shows its bytes and how it ended. A program
// would give the MeterProvider a reader of its exporter (OTLP, Prometheus)
// instead of the ManualReader used here.
func ExampleNew() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello through the proxy")
	}))
	defer upstream.Close()

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	p := proxywatch.New(nil)
	o, err := pwotel.New(p, &pwotel.Options{MeterProvider: mp})
	if err != nil {
		panic(err)
	}
	defer o.Close()
	stop := p.Observe(o)

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

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "proxywatch.bytes" && m.Name != "proxywatch.connections.closed" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				fmt.Println(m.Name, dp.Attributes.Encoded(attribute.DefaultEncoder()), dp.Value)
			}
		}
	}
	// Unordered output:
	// proxywatch.bytes direction=up 0
	// proxywatch.bytes direction=down 23
	// proxywatch.connections.closed protocol=HTTP,reason=completed 1
}
