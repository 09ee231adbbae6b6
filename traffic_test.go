package proxywatch_test

import (
	"io"
	"testing"
	"time"
)

func TestLiveProgressDuringSlowDownload(t *testing.T) {
	up := slowServer(8, 10_000, 150*time.Millisecond, nil)
	defer up.Close()
	p, pu := setup(t, nil)
	var seen []uint64
	done := make(chan error, 1)
	go func() {
		resp, err := client(t, pu, nil).Get(up.URL)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, "the download to start", func() bool { return len(p.Connections()) == 1 })
	var rate float64
	for len(p.Connections()) == 1 {
		c := p.Connections()
		if len(c) == 1 {
			seen = append(seen, c[0].Down)
			rate = max(rate, c[0].DownRate)
		}
		time.Sleep(40 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	distinct := map[uint64]bool{}
	for _, d := range seen {
		if d > 0 && d < 80_000 {
			distinct[d] = true
		}
	}
	if len(distinct) < 3 {
		t.Errorf("saw %d distinct partial counts during the download (%v); counts are not live", len(distinct), seen)
	}
	if rate <= 0 {
		t.Error("DownRate never rose above zero during the download")
	}
}
