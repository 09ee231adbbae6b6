package proxywatch_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/proxywatch/proxywatch"
)

func TestBlockingObserverDoesNotStallTraffic(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	release := make(chan struct{})
	var calls atomic.Int64
	block := func() { calls.Add(1); <-release }
	obs := struct {
		proxywatch.TrafficObserverFunc
		proxywatch.ConnObserverFunc
		proxywatch.LogObserverFunc
	}{
		func(proxywatch.TrafficSample) { block() },
		func(proxywatch.ConnEvent) { block() },
		func(proxywatch.LogRecord) { block() },
	}
	p, pu := setup(t, &proxywatch.Options{ObserverQueue: 8})
	stop := p.Observe(obs)
	c := client(t, pu, nil)
	for i := 0; i < 200; i++ {
		resp, err := c.Get(up.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if calls.Load() == 0 {
		t.Error("the observer was never called")
	}
	if p.Stats().Dropped == 0 {
		t.Error("no event was dropped although the observer blocked")
	}
	close(release)
	stop()
}
