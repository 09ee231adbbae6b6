package clash_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/proxywatch/proxywatch"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startProxy serves a Proxy on loopback until the test ends.
func startProxy(t *testing.T) (*proxywatch.Proxy, *url.URL) {
	t.Helper()
	p := proxywatch.New(&proxywatch.Options{SampleInterval: 50 * time.Millisecond})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(l) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return p, &url.URL{Scheme: "http", Host: l.Addr().String()}
}

// streamServer sends an endless body in 32 KiB chunks, one every 10 ms, until
// the client goes away: a large transfer that is always in flight.
func streamServer(tlsOn bool) *httptest.Server {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		w.Header().Set("Content-Length", fmt.Sprint(1<<40)) // never completes
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	if tlsOn {
		return httptest.NewTLSServer(handler)
	}
	return httptest.NewServer(handler)
}

// errNoError stands for a transfer that ended without an error.
var errNoError = errors.New("the transfer ended without error")
