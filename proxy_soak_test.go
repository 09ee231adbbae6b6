package proxywatch_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
)

// soak selects the long soak (make soak); without it TestSoak runs a short
// version of the same load, in seconds.
var soak = flag.Bool("soak", false, "run the long soak: hundreds of clients, tens of thousands of connections")

// soakLoad is how much load one soak run puts on the proxy.
type soakLoad struct {
	rounds  int // repeated rounds, to see memory come back after each
	workers int // concurrent clients
	ops     int // exchanges per client per round
}

// TestSoak runs rounds of concurrent clients mixing every mode (plain GET and
// upload, tunnel, MITM, WebSocket plain and MITM, and injected client aborts)
// against a Proxy watched by 20 dashboard clients through a hub, one of which
// never reads. It requires every exchange to succeed but the injected aborts,
// the books to balance after every round, and the heap and goroutines to come
// back to the level of the first round; it reports the figures.
func TestSoak(t *testing.T) {
	load, queue := soakLoad{rounds: 3, workers: 12, ops: 12}, 1<<12
	if *soak {
		load, queue = soakLoad{rounds: 5, workers: 250, ops: 40}, 1<<16
	}
	e := newFaultEnv(t, &proxywatch.Options{SampleInterval: 100 * time.Millisecond, ObserverQueue: queue})
	// The ledger sums every closed connection, beyond what the history
	// keeps, to check the totals against.
	var ledger struct {
		sync.Mutex
		closed, up, down uint64
	}
	stopLedger := e.p.Observe(proxywatch.ConnObserverFunc(func(ev proxywatch.ConnEvent) {
		if ev.State == proxywatch.ConnClosed {
			ledger.Lock()
			ledger.closed++
			ledger.up += ev.Conn.Up
			ledger.down += ev.Conn.Down
			ledger.Unlock()
		}
	}))
	t.Cleanup(stopLedger)

	// The dashboard: a hub with 20 subscribed clients.
	h := hub.New(e.p, &hub.Options{Token: "soak", TrafficInterval: 100 * time.Millisecond, ConnectionsInterval: 200 * time.Millisecond, SendQueue: 1024})
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { h.Close() })
	dash := startDashboards(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/start?token=soak", 20)

	var (
		ops, injected, errs atomic.Int64
		firstErrs           = make(chan error, 10)
		heap, goroutines    []uint64
		peakHeap, peakGs    atomic.Uint64
	)
	for round := range load.rounds {
		stopSampling := sampleRuntime(&peakHeap, &peakGs)
		var wg sync.WaitGroup
		for w := range load.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.soakWorker(t, uint64(round*load.workers+w), load.ops, &ops, &injected, func(err error) {
					errs.Add(1)
					select {
					case firstErrs <- err:
					default:
					}
				})
			}()
		}
		wg.Wait()
		stopSampling()

		// The books balance after every round.
		for _, c := range e.clients {
			c.CloseIdleConnections()
		}
		e.checkClean(t)
		st := e.p.Stats()
		if st.Dropped != 0 {
			t.Fatalf("round %d: %d observer events dropped: the ledger cannot balance", round, st.Dropped)
		}
		waitFor(t, "the ledger to see every closed connection", func() bool {
			ledger.Lock()
			defer ledger.Unlock()
			return ledger.closed == st.Closed
		})
		st = e.p.Stats()
		up, down := st.Up, st.Down
		ledger.Lock()
		if ledger.up != up || ledger.down != down {
			t.Errorf("round %d: totals %d/%d, the closed connections sum to %d/%d", round, up, down, ledger.up, ledger.down)
		}
		ledger.Unlock()

		// What is left once the clients are gone: the heap after a
		// collection, and the goroutines.
		e.p.GoProxy().Tr.CloseIdleConnections()
		hp, gs := settle(t)
		heap, goroutines = append(heap, hp), append(goroutines, gs)
		t.Logf("round %d: %d exchanges so far, %d connections, heap %s after GC, %d goroutines", round, ops.Load(), st.Closed, mb(hp), gs)
	}
	close(firstErrs)
	for err := range firstErrs {
		t.Errorf("exchange failed: %v", err)
	}
	readers := dash.stop()

	st := e.p.Stats()
	t.Logf("load: %d rounds of %d clients x %d exchanges: %d exchanges (%d injected aborts), %d errors, %d connections, %s up, %s down",
		load.rounds, load.workers, load.ops, ops.Load(), injected.Load(), errs.Load(), st.Closed, mb(st.Up), mb(st.Down))
	t.Logf("peaks: heap %s, %d goroutines; after each round: heap %v, goroutines %v", mb(peakHeap.Load()), peakGs.Load(), mbs(heap), goroutines)
	t.Logf("dashboards: %d reading clients got %d frames (%d traffic, %d connections, %d events), %d of them dropped by the hub for falling behind; the one never reading: %s; observer events dropped: %d",
		len(readers.frames), readers.total(), readers.byType[hub.TypeTraffic], readers.byType[hub.TypeConnections], readers.byType[hub.TypeEvent], readers.dropped, readers.slowEnd, st.Dropped)

	if errs.Load() != 0 {
		t.Errorf("%d exchanges failed that no fault was injected into", errs.Load())
	}
	// No growth across rounds: the first round warms what is bounded (the
	// history ring, the certificate cache, the hub's backlog and queues),
	// later rounds must not add to it.
	if last, first := heap[len(heap)-1], heap[0]; last > first+max(first/4, 4<<20) {
		t.Errorf("heap grew from %s after the first round to %s after the last", mb(first), mb(last))
	}
	if last, first := goroutines[len(goroutines)-1], goroutines[0]; last > first {
		t.Errorf("goroutines grew from %d after the first round to %d after the last", first, last)
	}
	for i, n := range readers.frames {
		if n == 0 {
			t.Errorf("dashboard client %d got no frame: the one that never reads stalled it", i)
		}
	}
	if !*soak && readers.dropped != 0 {
		// Under the long load a reading client may fall behind the events of
		// hundreds of clients (the figures say how many); under the short
		// one, none may.
		t.Errorf("%d reading dashboards dropped under the short load", readers.dropped)
	}
	if readers.byType[hub.TypeTraffic] == 0 || readers.byType[hub.TypeConnections] == 0 || readers.byType[hub.TypeEvent] == 0 {
		t.Errorf("the dashboards missed whole topics: %v", readers.byType)
	}
}

// soakWorker is one client: it makes n exchanges, chosen at random among the
// modes, with its own clients (renewed now and then, so that TCP and TLS
// connections churn too).
func (e *faultEnv) soakWorker(t *testing.T, seed uint64, n int, ops, injected *atomic.Int64, fail func(error)) {
	rng := rand.New(rand.NewPCG(seed, 7))
	clients := map[string]*http.Client{}
	closeAll := func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}
	renew := func() {
		closeAll()
		for _, mode := range httpModes {
			clients[mode] = e.freshClient(mode)
		}
	}
	renew()
	defer closeAll()
	for i := range n {
		if i%10 == 9 {
			renew()
		}
		ops.Add(1)
		size := 1000 + rng.IntN(60_000)
		var err error
		switch k := rng.IntN(100); {
		case k < 25:
			err = e.httpOp(clients[modePlain], modePlain, "/ok", size)()
		case k < 35:
			mode := pick(rng, httpModes)
			err = e.uploadOp(clients[mode], mode, size)
		case k < 55:
			err = e.httpOp(clients[modeTunnel], modeTunnel, "/ok", size)()
		case k < 80:
			err = e.httpOp(clients[modeMITM], modeMITM, "/ok", size)()
		case k < 88:
			err = e.wsOp(false, size)()
		case k < 95:
			err = e.wsOp(true, size)()
		default:
			// An injected fault: the client gives up mid-response.
			injected.Add(1)
			mode := pick(rng, httpModes)
			e.abortOp(clients[mode], mode)
		}
		if err != nil {
			fail(err)
		}
	}
}

func pick(rng *rand.Rand, modes []string) string { return modes[rng.IntN(len(modes))] }

// freshClient is a client of the proxy for mode that the test does not keep:
// its owner closes its idle connections.
func (e *faultEnv) freshClient(mode string) *http.Client {
	roots := map[string]*x509.CertPool{modeTunnel: e.tunRoots, modeMITM: e.mitmRoots}[mode]
	return &http.Client{
		Timeout: 30 * time.Second, // only a guard against a hung test
		Transport: &http.Transport{
			Proxy:           http.ProxyURL(e.pu),
			TLSClientConfig: &tls.Config{RootCAs: roots},
		},
	}
}

// uploadOp posts size bytes to /upload in mode and checks that the upstream
// read them all.
func (e *faultEnv) uploadOp(c *http.Client, mode string, size int) error {
	req, _ := http.NewRequest("POST", e.url(mode, "/upload", false), strings.NewReader(string(payload(size))))
	o := do(c, req, len(strconv.Itoa(size)))
	switch {
	case o.err != nil:
		return o.err
	case !o.complete():
		return fmt.Errorf("upload of %d bytes: %v", size, o)
	}
	return nil
}

// abortOp starts a long download in mode and gives up after its first bytes.
func (e *faultEnv) abortOp(c *http.Client, mode string) {
	resp, err := c.Get(e.url(mode, "/slow?n=1000000", false))
	if err != nil {
		return
	}
	io.ReadFull(resp.Body, make([]byte, 5000))
	resp.Body.Close()
}

// sampleRuntime records the peak heap and goroutine count until the returned
// function is called.
func sampleRuntime(heap, goroutines *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			raise(heap, ms.HeapAlloc)
			raise(goroutines, uint64(runtime.NumGoroutine()))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func raise(peak *atomic.Uint64, v uint64) {
	for {
		cur := peak.Load()
		if v <= cur || peak.CompareAndSwap(cur, v) {
			return
		}
	}
}

// settle waits for the goroutines of finished work to return, and returns
// the heap in use after a collection and the goroutine count.
func settle(t *testing.T) (heap, goroutines uint64) {
	t.Helper()
	prev := -1
	for range 100 { // until the count holds still for 50 ms
		n := runtime.NumGoroutine()
		if n == prev {
			break
		}
		prev = n
		time.Sleep(50 * time.Millisecond)
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, uint64(runtime.NumGoroutine())
}

func mb(n uint64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

func mbs(ns []uint64) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = mb(n)
	}
	return out
}

// dashboards are WebSocket clients of the hub, all subscribed to every topic;
// the last one never reads a frame.
type dashboards struct {
	once   sync.Once
	wg     sync.WaitGroup
	conns  []*websocket.Conn
	mu     sync.Mutex
	result dashResult
}

type dashResult struct {
	frames  []int          // per reading client
	byType  map[string]int // over all reading clients
	dropped int            // reading clients the hub dropped for falling behind (1008)
	slowEnd string         // how the one never reading ended
}

func (r dashResult) total() int {
	n := 0
	for _, f := range r.frames {
		n += f
	}
	return n
}

func startDashboards(t *testing.T, url string, n int) *dashboards {
	t.Helper()
	d := &dashboards{result: dashResult{frames: make([]int, n-1), byType: map[string]int{}}}
	sub := hub.Request{Action: hub.ActionSubscribe, Topics: []string{hub.TopicTraffic, hub.TopicConnections, hub.TopicLogs, hub.TopicEvents}, LogLevel: "WARN"}
	for i := range n {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.conns = append(d.conns, c)
		if err := c.WriteJSON(sub); err != nil {
			t.Fatal(err)
		}
		if i == n-1 {
			continue // never reads
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			for {
				_, raw, err := c.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) && ce.Code == websocket.ClosePolicyViolation {
						d.mu.Lock()
						d.result.dropped++
						d.mu.Unlock()
					}
					return
				}
				// Every frame starts {"type":"...": reading the type
				// without decoding the rest keeps the client quick.
				typ, _, _ := strings.Cut(strings.TrimPrefix(string(raw[:min(len(raw), 40)]), `{"type":"`), `"`)
				d.mu.Lock()
				d.result.frames[i]++
				d.result.byType[typ]++
				d.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() { d.stop() })
	return d
}

// stop closes the reading clients and returns what they got; it finds out
// whether the hub dropped the client that never read.
func (d *dashboards) stop() dashResult {
	d.once.Do(d.close)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.result
}

func (d *dashboards) close() {
	slow := d.conns[len(d.conns)-1]
	// Drain what the hub queued for the slow client: a close frame at the
	// end means the hub dropped it for its full queue, a cut connection
	// that a write to it timed out.
	slow.SetReadDeadline(time.Now().Add(2 * time.Second))
	end := "still connected"
	for {
		if _, _, err := slow.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			var ne net.Error
			switch {
			case errors.As(err, &ce):
				end = fmt.Sprintf("dropped by the hub (%d)", ce.Code)
			case errors.As(err, &ne) && ne.Timeout():
			default:
				end = "cut by the hub (write timeout)"
			}
			break
		}
	}
	d.mu.Lock()
	d.result.slowEnd = end
	d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
	d.wg.Wait()
}
