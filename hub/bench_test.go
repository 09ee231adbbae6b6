package hub_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
)

// manyConns returns n live connections with realistic field sizes.
func manyConns(n int) []proxywatch.ConnInfo {
	conns := make([]proxywatch.ConnInfo, n)
	start := time.Now()
	for i := range conns {
		host := fmt.Sprintf("cdn-%d.static.example.com:443", i)
		conns[i] = proxywatch.ConnInfo{
			ID: proxywatch.ConnID(100000 + i), Parent: proxywatch.ConnID(100000 + i - i%5),
			Protocol: proxywatch.ProtoHTTPSMITM, Method: "GET", Host: host,
			URL:    fmt.Sprintf("https://%s/assets/js/chunk-%08x.js?v=%d", host[:len(host)-4], i*2654435761, i),
			Client: fmt.Sprintf("192.168.1.%d:%d", i%250, 30000+i%30000),
			Start:  start.Add(-time.Duration(i) * time.Millisecond),
			Up:     uint64(i) * 731, Down: uint64(i) * 91733, UpRate: float64(i%97) * 13.7, DownRate: float64(i%89) * 1024.5,
			Status: 200,
		}
	}
	return conns
}

// BenchmarkConnectionsTick measures one connections push with 10,000 live
// connections: encoding alone, and the whole tick delivered to 20 subscribed
// clients (snapshot copy, encoding once, queueing, 20 socket writes, and the
// 20 test clients reading on loopback, all in this process).
func BenchmarkConnectionsTick(b *testing.B) {
	const nConns, nClients = 10000, 20
	conns := manyConns(nConns)

	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		var frame []byte
		for b.Loop() {
			frame = hub.EncodeConnections(conns)
		}
		b.ReportMetric(float64(len(frame)), "bytes/frame")
	})

	b.Run(fmt.Sprintf("%dconns-%dclients", nConns, nClients), func(b *testing.B) {
		src := &memSource{}
		src.setConns(conns)
		h := hub.NewWithSource(src, &hub.Options{Token: "s3cret", TrafficInterval: time.Hour, ConnectionsInterval: time.Hour})
		srv := serve(b, h)
		received := make(chan int64, nClients)
		for range nClients {
			c := dialRaw(b, srv)
			go func() {
				for {
					_, r, err := c.NextReader()
					if err != nil {
						return
					}
					n, _ := io.Copy(io.Discard, r)
					received <- n
				}
			}()
		}
		var perClient int64
		cpu0 := processCPU()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			h.PushConnectionsNow()
			for range nClients {
				perClient = <-received
			}
		}
		b.StopTimer()
		if cpu := processCPU() - cpu0; cpu > 0 {
			perTick := cpu / time.Duration(b.N)
			b.ReportMetric(float64(perTick)/float64(time.Millisecond), "cpu-ms/tick")
			b.ReportMetric(100*float64(perTick)/float64(2*time.Second), "%core@2s")
		}
		b.ReportMetric(float64(perClient), "bytes/client")
	})
}
