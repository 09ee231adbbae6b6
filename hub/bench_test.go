package hub_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
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
// connections and 20 subscribed clients, as the hub's own CPU: the 20
// clients run in a child process (this test binary, see readerChild), so
// that their reading and decoding is not counted. What is counted, in this
// process, is the whole tick: the snapshot copy (memSource copies the list
// as Proxy.Connections does), diffing, encoding once, queueing, the 20
// socket writes, and the loopback server's share; also the benchmark's own
// changes to the moving connections between ticks (a few µs).
//
//   - full: topic connections, the whole list every tick (as before
//     connectionsDelta);
//   - delta-10pct: topic connectionsDelta with a tenth of the connections
//     moving between ticks. A proxy with 10,000 live connections holds
//     mostly idle ones (keep-alive, tunnels and WebSockets waiting for
//     bytes): a tenth moving within one 2-second interval is on the busy
//     side;
//   - delta-all: every connection moving, the worst case for a delta.
//
// encode is the full list's encoding alone.
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

	for _, tc := range []struct {
		name   string
		topic  string
		moving int // one in moving connections moves between ticks
	}{
		{"full", hub.TopicConnections, 10},
		{"delta-10pct", hub.TopicConnectionsDelta, 10},
		{"delta-all", hub.TopicConnectionsDelta, 1},
	} {
		b.Run(fmt.Sprintf("%s-%dconns-%dclients", tc.name, nConns, nClients), func(b *testing.B) {
			src := &memSource{}
			src.setConns(slices.Clone(conns))
			h := hub.NewWithSource(src, &hub.Options{Token: "s3cret", TrafficInterval: time.Hour, ConnectionsInterval: time.Hour})
			srv := serve(b, h)
			frames := startReaders(b, srv, tc.topic, nClients)
			// The first frame of each client: the full list on subscribe.
			for range nClients {
				<-frames
			}
			tick := 0
			move := func() {
				tick++
				src.mu.Lock()
				for i := range src.conns {
					if i%tc.moving == tick%tc.moving {
						src.conns[i].Down += 1500
						src.conns[i].DownRate = float64(tick*100 + i%1000)
					}
				}
				src.mu.Unlock()
			}
			var bytesPerClient int64
			cpu0 := processCPU()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				move()
				h.PushConnectionsNow()
				for range nClients {
					bytesPerClient = <-frames
				}
			}
			b.StopTimer()
			if cpu := processCPU() - cpu0; cpu > 0 {
				perTick := cpu / time.Duration(b.N)
				b.ReportMetric(float64(perTick)/float64(time.Millisecond), "hub-cpu-ms/tick")
			}
			b.ReportMetric(float64(bytesPerClient), "bytes/frame")
			wantMin := int64(nConns / tc.moving * 20) // at least an id and a counter per mover
			if bytesPerClient < wantMin {
				b.Fatalf("%d bytes per frame, want at least %d", bytesPerClient, wantMin)
			}
		})
	}
}

// readerEnv names the environment variables that make the test binary a
// reader child (see TestMain).
const (
	readerEnvURL     = "HUB_BENCH_READER_URL"
	readerEnvTopic   = "HUB_BENCH_READER_TOPIC"
	readerEnvClients = "HUB_BENCH_READER_CLIENTS"
)

// startReaders starts a child process with n clients of srv subscribed to
// topic, and returns the sizes of the frames they receive of that topic's
// message type, one value per frame and client. The child ends with the
// benchmark.
func startReaders(b *testing.B, srv *httptest.Server, topic string, n int) <-chan int64 {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), readerEnvURL+"="+wsURL(srv, "?token=s3cret"), readerEnvTopic+"="+topic,
		readerEnvClients+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // the child ends when it closes
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sizes := make(chan int64, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			v, err := strconv.ParseInt(sc.Text(), 10, 64)
			if err != nil {
				b.Errorf("reader child: %q", sc.Text())
				continue
			}
			sizes <- v
		}
	}()
	b.Cleanup(func() {
		stdin.Close()
		<-done
		if err := cmd.Wait(); err != nil {
			b.Errorf("reader child: %v", err)
		}
	})
	return sizes
}

// readerChild is the child of startReaders: it connects the clients, reads
// every frame and prints the size of each of the topic's messages until its
// standard input closes. It returns the exit code.
func readerChild(url, topic string, n int) int {
	typ := map[string]string{hub.TopicConnections: hub.TypeConnections, hub.TopicConnectionsDelta: hub.TypeConnectionsDelta}[topic]
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var conns []*websocket.Conn
	var wg sync.WaitGroup
	for range n {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		conns = append(conns, c)
		if err := c.WriteJSON(hub.Request{Action: hub.ActionSubscribe, Topics: []string{topic}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			prefix := []byte(`{"type":"` + typ + `"`)
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				if bytes.HasPrefix(data, prefix) {
					mu.Lock()
					fmt.Fprintln(w, len(data))
					w.Flush()
					mu.Unlock()
				}
			}
		}()
	}
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return 0
}

// BenchmarkEventsFanout measures 1,000 connection events (500 connections
// opened and closed) pushed to 20 clients, one frame per event (topic
// events) against one frame per interval (topic eventBatches, flushed once
// per 1,000 events here, as at 10,000 events a second with the default
// 100 ms; a batch carries each of these connections once, as closed). The
// CPU is the whole process's, per event the hub observed: the hub and the 20
// clients reading on loopback.
func BenchmarkEventsFanout(b *testing.B) {
	const nClients, nEvents = 20, 1000
	marker := []byte(`{"event":`)
	for _, topic := range []string{hub.TopicEvents, hub.TopicEventBatches} {
		b.Run(topic, func(b *testing.B) {
			h := hub.NewWithSource(&memSource{}, &hub.Options{Token: "s3cret", EventInterval: time.Hour, SendQueue: 4096})
			srv := serve(b, h)
			// What each client must read per round: every event, or in a
			// batch every connection once.
			perRound := nEvents
			if topic == hub.TopicEventBatches {
				perRound = nEvents / 2
			}
			got := make(chan struct{}, nClients)
			var frames, read atomic.Int64
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
						k := bytes.Count(data, marker)
						read.Add(int64(k))
						n += k
						for n >= perRound {
							n -= perRound
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
			if r, w := read.Load(), int64(b.N*nClients*perRound); r != w {
				b.Fatalf("clients read %d events, want %d", r, w)
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
func dialTopics(b testing.TB, srv *httptest.Server, topics ...string) *websocket.Conn {
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
