package main

import (
	"bufio"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the suite's child process, as the
// command does.
func TestMain(m *testing.M) {
	if runChild() {
		return
	}
	os.Exit(m.Run())
}

// The whole suite, in miniature, against real children: every scenario moves
// data through every proxy without an error, each proxy's CPU is measured,
// the idle tunnels grow its memory, the slow clients read at their pace, and
// the report has a row for each. (The
// bare kind is left out here: its MITM generates an RSA key per handshake,
// which takes minutes under the race detector; TestBareChild covers it.)
func TestSuiteInMiniature(t *testing.T) {
	o := options{
		reps:        1,
		duration:    200 * time.Millisecond,
		warmup:      300 * time.Millisecond,
		proxies:     "direct,tuned,pw",
		hubClients:  3,
		hubTopics:   watchTopics,
		idleConns:   20,
		slowClients: 8,
		slowSettle:  500 * time.Millisecond,
		maxWorkers:  4, // 50 TLS handshakes at once take seconds under the race detector
	}
	var log strings.Builder
	res, err := run(o, &log)
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, log.String())
	}
	if len(res.scenarios) != len(scenarios()) {
		t.Errorf("%d scenarios ran, want %d", len(res.scenarios), len(scenarios()))
	}
	for _, sc := range res.scenarios {
		for _, target := range res.targets {
			ss := res.samples[sc.name][target.name]
			if len(ss) != 1 {
				t.Errorf("%s via %s: %d samples, want 1", sc.name, target.name, len(ss))
				continue
			}
			s := ss[0]
			if s.units <= 0 || s.errs != 0 || s.firstErr != nil {
				t.Errorf("%s via %s: %d units, %d errors (%v)", sc.name, target.name, s.units, s.errs, s.firstErr)
			}
			if target.child != nil && s.cpu <= 0 {
				t.Errorf("%s via %s: no CPU time measured", sc.name, target.name)
			}
			if sc.latency && (s.p50 <= 0 || s.p99 < s.p50) {
				t.Errorf("%s via %s: p50 %v p99 %v", sc.name, target.name, s.p50, s.p99)
			}
		}
	}
	// The heap figure is a difference of two heap readings in a child
	// process; in a run this short a garbage collection between them can make
	// it negative, so only its presence is checked. Goroutine stacks per
	// tunnel are always there.
	for _, name := range []string{kindTuned, kindPW} {
		if m := res.mem[name]; len(m) != 1 || math.IsNaN(m[0][0]) || m[0][1] <= 0 || m[0][2] < 0 {
			t.Errorf("%s: memory per idle tunnel %v, want one measurement with stacks > 0", name, m)
		}
	}
	for _, name := range []string{kindTuned, kindPW} {
		ss := res.slow[name]
		if len(ss) != 1 {
			t.Errorf("%s: %d slow-clients runs, want 1", name, len(ss))
			continue
		}
		if s := ss[0]; s.rss <= 0 || s.readRate <= 0 || s.toClients <= 0 || s.errs != 0 {
			t.Errorf("%s: slow clients %+v, want RSS, bytes read and queued, no errors", name, s)
		}
	}
	if _, ok := res.slow["direct"]; ok {
		t.Error("slow clients measured without a proxy")
	}
	rep := res.report()
	for _, want := range []string{"| http-small | pw |", "| ws-echo | tuned |", "| mitm-bulk | direct |", "pw ≥ 0.97× tuned", "hub clients",
		"8 slow clients reading 10 KB/s each: proxy RSS and kernel TCP memory"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	for _, name := range []string{kindTuned, kindPW} {
		row := regexp.MustCompile(`\| ` + name + ` \| \d+ MiB \| -?\d+ MiB \| -?\d+ MiB \| -?\d+ KiB \| \d+ / \d+ KiB \| \d+\.\d KB/s \| 0 \|`)
		if !row.MatchString(rep) {
			t.Errorf("report has no slow-clients row for %s:\n%s", name, rep)
		}
	}
}

// The slow-clients scenario leaves nothing behind: every client's goroutine
// and connection, the upstream's and the proxy's, are gone when it returns.
func TestSlowClientsLeaveNothing(t *testing.T) {
	up, err := startUpstreams()
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c, err := startChild(exe, kindPW, childConfig{MITMHost: up.mitm, UpstreamCA: up.certPEM, CADir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	tg := &target{name: kindPW, child: c, proxy: &url.URL{Scheme: "http", Host: c.hello.Proxy}}
	e := &env{up: up}

	goroutines := runtime.NumGoroutine()
	childBefore, err := c.stats()
	if err != nil {
		t.Fatal(err)
	}
	s, err := slowClients(e, tg, 20, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if s.readRate <= 0 || s.errs != 0 {
		t.Errorf("slow clients %+v, want bytes read and no errors", s)
	}
	if n := up.slowSrv.open.Load(); n != 0 {
		t.Errorf("the upstream has %d connections open", n)
	}
	socks, err := readTCPSockets()
	if err != nil {
		t.Fatal(err)
	}
	proxyPort, _ := portOf(c.hello.Proxy)
	upPort, _ := portOf(up.slow)
	if p, u := countSockets(socks, proxyPort, upPort); p != 0 || u != 0 {
		t.Errorf("%d sockets of connections to the proxy and %d to the upstream are open", p, u)
	}
	// Goroutines end a moment after their connections close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := c.stats()
		if err != nil {
			t.Fatal(err)
		}
		n := runtime.NumGoroutine()
		if n <= goroutines && st.Goroutines <= childBefore.Goroutines {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d here (%d before), %d in the child (%d before)", n, goroutines, st.Goroutines, childBefore.Goroutines)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := ensureFiles(tg, 1<<28); err == nil || !strings.Contains(err.Error(), "open files") {
		t.Errorf("ensureFiles for 2^28 clients: %v, want an error about open files", err)
	}
}

// The bare child is goproxy as NewProxyHttpServer makes it: it proxies plain
// HTTP, passes tunnels through and decrypts the MITM host with goproxy's own
// CA.
func TestBareChild(t *testing.T) {
	up, err := startUpstreams()
	if err != nil {
		t.Fatal(err)
	}
	defer up.close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c, err := startChild(exe, kindBare, childConfig{MITMHost: up.mitm, UpstreamCA: up.certPEM, CADir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.stop()
	tg := &target{name: kindBare, child: c, proxy: &url.URL{Scheme: "http", Host: c.hello.Proxy}}
	tg.roots = up.roots.Clone()
	if !tg.roots.AppendCertsFromPEM(c.hello.CA) {
		t.Fatal("the bare child sent no CA")
	}
	client := &http.Client{Transport: newTransport(tg, 1)}
	for _, u := range []string{"http://" + up.plain + "/small", "https://" + up.tunnel + "/small", "https://" + up.mitm + "/small"} {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != smallBody {
			t.Errorf("GET %s: %s, %d bytes", u, resp.Status, n)
		}
	}
	st, err := c.stats()
	if err != nil || st.CPUNanos <= 0 || st.Goroutines <= 0 {
		t.Errorf("stats: %+v, %v", st, err)
	}

	// An idle tunnel through it to the holding server.
	conn, err := net.Dial("tcp", c.hello.Proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "CONNECT "+up.hold+" HTTP/1.1\r\nHost: "+up.hold+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
}
