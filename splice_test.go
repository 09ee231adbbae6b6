package proxywatch_test

import (
	"io"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
)

// A tunnel that stays idle longer than a splice slice waits for bytes
// without a deadline (so that idle tunnels cost no CPU), and wakes up when
// bytes come: they are echoed and counted live, in both directions, and the
// totals stay exact.
func TestIdleTunnelWakesUpForBytes(t *testing.T) {
	echo := echoServer(t)
	p, pu := setup(t, nil)
	c := rawConnect(t, pu, echo.Addr().String())
	defer c.Close()
	var id proxywatch.ConnID
	waitFor(t, "the tunnel", func() bool {
		for _, ci := range p.Connections() {
			if ci.Protocol == proxywatch.ProtoTunnel {
				id = ci.ID
				return true
			}
		}
		return false
	})
	sent := 0
	roundTrip := func(n int) {
		t.Helper()
		msg := payload(n)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, n)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("echo after idling: %v", err)
		}
		sent += n
		waitFor(t, "live counts", func() bool {
			ci, ok := p.Connection(id)
			return ok && ci.Up == uint64(sent) && ci.Down == uint64(sent)
		})
	}
	roundTrip(10)
	for _, idle := range []time.Duration{600 * time.Millisecond, 50 * time.Millisecond, 900 * time.Millisecond} {
		time.Sleep(idle) // longer than a slice: both directions wait without a deadline
		roundTrip(3000)
	}
	c.Close()
	ci := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.ID == id })
	if ci.Up != uint64(sent) || ci.Down != uint64(sent) || ci.EndReason != proxywatch.EndCompleted {
		t.Errorf("closed tunnel: up %d down %d %q, want %d each, completed", ci.Up, ci.Down, ci.EndReason, sent)
	}
	checkTotals(t, p)
}
