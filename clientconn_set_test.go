package proxywatch_test

import (
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
)

func TestIdleTimeoutClosesTunnel(t *testing.T) {
	echo := echoServer(t)
	p, pu := setup(t, &proxywatch.Options{IdleTimeout: time.Second, SampleInterval: 50 * time.Millisecond})
	c := rawConnect(t, pu, echo.Addr().String())
	defer c.Close()
	// Activity keeps it open.
	for i := 0; i < 15; i++ {
		c.Write([]byte("x"))
		c.Read(make([]byte, 1))
		time.Sleep(100 * time.Millisecond)
	}
	if len(p.Connections()) != 1 {
		t.Fatal("an active tunnel was closed")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read succeeded on an idle tunnel")
	}
	info := findClosed(t, p, func(c proxywatch.ConnInfo) bool { return true })
	if info.EndReason != proxywatch.EndIdleTimeout {
		t.Errorf("ended with %q, want idle timeout", info.EndReason)
	}
}
