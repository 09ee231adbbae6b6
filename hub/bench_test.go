package hub_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

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

// BenchmarkEventsFanout measures 1,000 connection events (500 connections
// opened and closed) pushed to 20 clients, one frame per event (topic
// events) against one frame per interval (topic eventBatches, flushed once
// per 1,000 events here, as at 10,000 events a second with the default
// 100 ms). The CPU is the whole process's: the hub and the 20 clients
// reading on loopback.
func BenchmarkEventsFanout(b *testing.B) {
	const nClients, nEvents = 20, 1000
	marker := []byte(`{"event":`)
	for _, topic := range []string{hub.TopicEvents, hub.TopicEventBatches} {
		b.Run(topic, func(b *testing.B) {
			h := hub.NewWithSource(&memSource{}, &hub.Options{Token: "s3cret", EventInterval: time.Hour, SendQueue: 4096})
			srv := serve(b, h)
			got := make(chan struct{}, nClients)
			var frames atomic.Int64
			for range nClients {
				c := dialTopics(b, srv, topic)
				go func() {
					n := 0
					for {
						_, data, err := c.ReadMessage()
						if err != nil {
							return
						}
						frames.Add(1)
						n += bytes.Count(data, marker)
						for n >= nEvents {
							n -= nEvents
							got <- struct{}{}
						}
					}
				}()
			}
			events := make([]proxywatch.ConnEvent, 0, nEvents)
			for i := range nEvents / 2 {
				events = append(events, connEventAt(i, proxywatch.ConnOpened), connEventAt(i, proxywatch.ConnClosed))
			}
			cpu0 := processCPU()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for _, e := range events {
					h.ObserveConn(e)
				}
				h.FlushEventsNow()
				for range nClients {
					<-got
				}
			}
			b.StopTimer()
			if cpu := processCPU() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu)/float64(b.N)/float64(nEvents)/1e3, "cpu-µs/event")
			}
			b.ReportMetric(float64(frames.Load())/float64(b.N*nClients), "frames/client/op")
			want := int64(b.N * nClients) // one batch per client and op
			if topic == hub.TopicEvents {
				want *= nEvents
			}
			if frames.Load() != want {
				b.Fatalf("%d frames, want %d", frames.Load(), want)
			}
		})
	}
}

// connEventAt makes a lifecycle event of connection i with realistic fields.
func connEventAt(i int, state proxywatch.ConnState) proxywatch.ConnEvent {
	ci := manyConns(1)[0]
	ci.ID += proxywatch.ConnID(i)
	if state == proxywatch.ConnClosed {
		ci.End, ci.EndReason = ci.Start.Add(time.Second), proxywatch.EndCompleted
	}
	return proxywatch.ConnEvent{State: state, Conn: ci}
}

// dialTopics connects and subscribes to topics, discarding hello and the
// subscribed answer.
func dialTopics(b *testing.B, srv *httptest.Server, topics ...string) *websocket.Conn {
	b.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(wsURL(srv, "?token=s3cret"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	if err := conn.WriteJSON(hub.Request{Action: hub.ActionSubscribe, Topics: topics}); err != nil {
		b.Fatal(err)
	}
	for range 2 {
		if _, _, err := conn.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	return conn
}
