package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
	"go.uber.org/goleak"
)

func TestServeMetricsAfterRealTraffic(t *testing.T) {
	defer goleak.VerifyNone(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 1234))
	}))
	defer up.Close()
	p := proxywatch.New(nil)
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	go p.Serve(pl)
	ml, _ := net.Listen("tcp", "127.0.0.1:0")
	stop := serveMetrics(p, ml)

	pu, _ := url.Parse("http://" + pl.Addr().String())
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	for i := 0; i < 3; i++ {
		resp, err := (&http.Client{Transport: tr}).Get(up.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tr.CloseIdleConnections()
	for len(p.Connections()) > 0 {
		time.Sleep(time.Millisecond) // the last exchange ends right after its body was read
	}
	resp, err := http.Get("http://" + ml.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf(`proxywatch_bytes_total{direction="down"} %d`, 3*1234)
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %q", want)
	}
	if !strings.Contains(string(body), "go_goroutines") {
		t.Error("/metrics lacks the Go runtime metrics")
	}
	stop()
	p.Close()
}
