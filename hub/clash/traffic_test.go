package clash_test

import (
	"sync"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub/clash"
)

// TestTrafficFromSamples checks that /traffic reports the sampler's figures:
// over a real transfer, every message's totals are totals of a sample the
// sampler emitted, and once the transfer ends the stream reaches the proxy's
// totals.
func TestTrafficFromSamples(t *testing.T) {
	plain := streamServer(false)
	t.Cleanup(plain.Close)
	p, pu := startProxy(t)
	type totals struct{ up, down uint64 }
	var mu sync.Mutex
	sampled := map[totals]bool{{0, 0}: true}
	stop := p.Observe(proxywatch.TrafficObserverFunc(func(s proxywatch.TrafficSample) {
		mu.Lock()
		sampled[totals{s.UpTotal, s.DownTotal}] = true
		mu.Unlock()
	}))
	t.Cleanup(stop)
	_, srv := startAPI(t, p, &clash.Options{TrafficInterval: 100 * time.Millisecond})
	ws := dial(t, srv, "/traffic?token="+testSecret, nil)

	x := startTransfer(t, pu, plain.URL+"/t", nil)
	type traffic struct{ Up, Down, UpTotal, DownTotal uint64 }
	check := func() traffic {
		t.Helper()
		var tr traffic
		readJSON(t, ws, &tr)
		mu.Lock()
		ok := sampled[totals{tr.UpTotal, tr.DownTotal}]
		mu.Unlock()
		if !ok {
			t.Fatalf("totals %d/%d are no sample's", tr.UpTotal, tr.DownTotal)
		}
		return tr
	}
	for moving := 0; moving < 3; {
		if check().Down > 0 {
			moving++
		}
	}
	x.cancel()
	for deadline := time.Now().Add(10 * time.Second); p.Stats().Live != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the transfer's connection is still live")
		}
	}
	st := p.Stats()
	for {
		tr := check()
		if tr.UpTotal == st.Up && tr.DownTotal == st.Down {
			break
		}
		if tr.UpTotal > st.Up || tr.DownTotal > st.Down {
			t.Fatalf("totals %d/%d beyond the proxy's %d/%d", tr.UpTotal, tr.DownTotal, st.Up, st.Down)
		}
	}
}
