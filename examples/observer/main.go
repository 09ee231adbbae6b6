// Command observer shows a user-written observer: it accounts the bytes of
// every finished connection per destination host and prints them as a table
// when the program is interrupted.
//
//	go run ./examples/observer
//	curl -x http://127.0.0.1:8080 http://example.com/   # then Ctrl-C
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/proxywatch/proxywatch"
)

// HostBytes sums the bytes of closed connections per destination host. It is
// a proxywatch.ConnObserver: proxywatch calls ObserveConn from the observer's
// own goroutine, one event at a time, so the lock only guards against Print.
type HostBytes struct {
	mu    sync.Mutex
	hosts map[string]*hostTotal
}

type hostTotal struct {
	conns    int
	up, down uint64
}

// ObserveConn adds a closed connection's final bytes to its host.
func (h *HostBytes) ObserveConn(e proxywatch.ConnEvent) {
	if e.State != proxywatch.ConnClosed {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hosts == nil {
		h.hosts = make(map[string]*hostTotal)
	}
	t := h.hosts[e.Conn.Host]
	if t == nil {
		t = &hostTotal{}
		h.hosts[e.Conn.Host] = t
	}
	t.conns++
	t.up += e.Conn.Up
	t.down += e.Conn.Down
}

// Print writes the table, the busiest host first.
func (h *HostBytes) Print() {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.hosts))
	for n := range h.hosts {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := h.hosts[names[i]], h.hosts[names[j]]
		return a.up+a.down > b.up+b.down
	})
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "host\tconnections\tup\tdown\t")
	for _, n := range names {
		t := h.hosts[n]
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t\n", n, t.conns, t.up, t.down)
	}
	w.Flush()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "proxy listen address")
	flag.Parse()

	hosts := &HostBytes{}
	p := proxywatch.New(&proxywatch.Options{Conns: hosts})
	go func() {
		log.Printf("proxy listening on %s; Ctrl-C prints bytes per host", *addr)
		if err := p.ListenAndServe(*addr); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	<-ctx.Done()

	// Shutdown ends what is still live and returns once every event was
	// delivered, so the table is complete.
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.Shutdown(shutdown)
	hosts.Print()
}
