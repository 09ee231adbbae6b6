// Command bench is proxywatch's side-by-side benchmark suite (make bench). It
// needs nothing but Go: it starts its own upstream servers (plain HTTP,
// HTTPS, WebSocket echo) and load generators in this process, and each proxy
// under test in a child process of the same binary, all on loopback:
//
//   - direct: no proxy at all;
//   - bare: goproxy v1.9.3 exactly as goproxy.NewProxyHttpServer makes it
//     (MITM through goproxy.MitmConnect, with no certificate cache);
//   - tuned: the same goproxy, unobserved, with proxywatch's default
//     transport and a MITM leaf cache: what proxywatch adds on top of it is
//     observation alone;
//   - pw: proxywatch with default options, fully observed: registry and
//     sampler, log sink, and a hub.New(p, nil) with 20 subscribed WebSocket
//     clients (in this process) reading every topic;
//   - go-mitmproxy: github.com/lqqyt2423/go-mitmproxy v1.8.5 with its
//     defaults, built from ./peers, a module of its own so that the root
//     module does not depend on it (skipped when it cannot be built).
//
// Every scenario runs against every proxy in turn, the order rotating from
// one repetition to the next, and reports medians. A proxy's CPU time is read
// from its own process (getrusage in the child, before and after each
// measured window), and its peak RSS from the kernel (VmHWM, reset before
// each window), so neither includes the load generators or the upstreams.
// Two scenarios measure memory instead: idle-conns, the heap and stacks per
// idle CONNECT tunnel, and slow-clients, the proxy's RSS and the kernel's
// TCP memory while a thousand clients read endless downloads at 10 KB/s.
//
// Usage:
//
//	go run ./internal/bench [-quick] [-reps 5] [-duration 2s] [-scenarios a,b] [-proxies a,b] [-slow-clients 1000] [-profile dir] [-o file]
package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/proxywatch/proxywatch"
)

// options are the command's flags.
type options struct {
	quick       bool
	reps        int
	duration    time.Duration
	warmup      time.Duration
	scenarios   string
	proxies     string
	peersDir    string
	profileDir  string
	hubClients  int
	hubTopics   string
	maxWorkers  int // caps every scenario's concurrency (0: no cap); for tests
	idleConns   int
	slowClients int
	slowSettle  time.Duration // how long the slow clients read before their memory is read
	out         string
}

func main() {
	if runChild() {
		return
	}
	var o options
	flag.BoolVar(&o.quick, "quick", false, "short run: 3 repetitions of 500 ms windows, 300 idle connections, 300 slow clients for 3 s")
	flag.IntVar(&o.reps, "reps", 5, "repetitions of every scenario and proxy (median reported; at least 3)")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "measured window of each run")
	flag.DurationVar(&o.warmup, "warmup", 300*time.Millisecond, "unmeasured warm-up before each window")
	flag.StringVar(&o.scenarios, "scenarios", "", "comma-separated scenarios to run (default all; see -list)")
	flag.StringVar(&o.proxies, "proxies", "", "comma-separated proxies (default direct,bare,tuned,pw,go-mitmproxy)")
	flag.StringVar(&o.peersDir, "peers", "internal/bench/peers", "directory of the go-mitmproxy peer module; empty skips it")
	flag.StringVar(&o.profileDir, "profile", "", "write a CPU profile of every proxy for every scenario (and a heap profile with the idle tunnels open) into this directory")
	flag.IntVar(&o.hubClients, "hub-clients", 20, "WebSocket clients subscribed to proxywatch's hub")
	flag.StringVar(&o.hubTopics, "hub-topics", watchTopics, "comma-separated topics the hub clients subscribe to")
	flag.IntVar(&o.idleConns, "idle-conns", 1000, "idle tunnels opened to measure memory per live connection")
	flag.IntVar(&o.slowClients, "slow-clients", 1000, "clients of the slow-clients scenario, each reading an endless download at 10 KB/s (0 skips it)")
	flag.StringVar(&o.out, "o", "", "also write the report (Markdown) to this file")
	list := flag.Bool("list", false, "list the scenarios and exit")
	flag.Parse()
	if *list {
		for _, sc := range scenarios() {
			fmt.Printf("%-16s %s\n", sc.name, sc.what)
		}
		fmt.Printf("%-16s %s\n", memScenario, memWhat)
		fmt.Printf("%-16s %s\n", slowScenario, slowWhat)
		return
	}
	o.slowSettle = 5 * time.Second
	if o.quick {
		o.reps, o.duration, o.warmup, o.idleConns = 3, 500*time.Millisecond, 200*time.Millisecond, 300
		if !flagSet("slow-clients") {
			o.slowClients = 300
		}
		o.slowSettle = 3 * time.Second
	}
	if o.reps < 3 {
		o.reps = 3
	}
	res, err := run(o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	rep := res.report()
	fmt.Print(rep)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(rep), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

const (
	memScenario = "idle-conns"
	memWhat     = "memory per live CONNECT tunnel (heap and stacks after GC), and CPU while they idle"
)

// run runs the suite and returns its results. Progress goes to logw.
func run(o options, logw io.Writer) (*results, error) {
	logf := func(format string, args ...any) { fmt.Fprintf(logw, format+"\n", args...) }
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	up, err := startUpstreams()
	if err != nil {
		return nil, err
	}
	defer up.close()
	caDir, err := os.MkdirTemp("", "proxywatch-bench-ca")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(caDir)
	// Made here once, so that the children only load it.
	if _, err := proxywatch.LoadOrCreateCA(caDir); err != nil {
		return nil, err
	}
	cfg := childConfig{MITMHost: up.mitm, UpstreamCA: up.certPEM, CADir: caDir}

	want := func(list, name string) bool {
		if list == "" {
			return true
		}
		for _, s := range strings.Split(list, ",") {
			if strings.TrimSpace(s) == name {
				return true
			}
		}
		return false
	}
	var notes []string
	targets := []*target{}
	if want(o.proxies, "direct") {
		targets = append(targets, &target{name: "direct", roots: up.roots})
	}
	for _, kind := range []string{kindBare, kindTuned, kindPW, kindPeer} {
		if !want(o.proxies, kind) {
			continue
		}
		bin := exe
		if kind == kindPeer {
			if o.peersDir == "" {
				continue
			}
			logf("building the go-mitmproxy peer in %s", o.peersDir)
			if bin, err = buildPeer(o.peersDir); err != nil {
				notes = append(notes, fmt.Sprintf("go-mitmproxy was not measured: %v", err))
				logf("skipping go-mitmproxy: %v", err)
				continue
			}
			defer os.RemoveAll(filepath.Dir(bin))
		}
		c, err := startChild(bin, kind, cfg)
		if err != nil {
			return nil, err
		}
		defer c.stop()
		t := &target{name: kind, child: c, proxy: &url.URL{Scheme: "http", Host: c.hello.Proxy}}
		t.roots = x509.NewCertPool()
		t.roots.AppendCertsFromPEM(up.certPEM)
		t.roots.AppendCertsFromPEM(c.hello.CA)
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("no proxy selected by -proxies %q", o.proxies)
	}

	var watchers *hubWatchers
	for _, t := range targets {
		if t.name == kindPW && o.hubClients > 0 {
			if watchers, err = watchHub(t.child.hello.Hub, t.child.hello.Token, o.hubClients, o.hubTopics); err != nil {
				return nil, fmt.Errorf("hub clients: %v", err)
			}
			defer watchers.close()
		}
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, err
		}
	}

	res := &results{opts: o, targets: targets, samples: map[string]map[string][]sample{}, mem: map[string][][3]float64{}, slow: map[string][]slowSample{}}
	e := &env{up: up}
	for _, sc := range scenarios() {
		if !want(o.scenarios, sc.name) {
			continue
		}
		res.scenarios = append(res.scenarios, sc)
		res.samples[sc.name] = map[string][]sample{}
		stopProfiles := startProfiles(o.profileDir, sc.name, targets, logf)
		for r := range o.reps {
			for i := range targets {
				t := targets[(i+r)%len(targets)]
				if o.maxWorkers > 0 {
					sc.workers = min(sc.workers, o.maxWorkers)
				}
				s, err := measure(sc, e, t, o.warmup, o.duration)
				if err != nil {
					return nil, fmt.Errorf("%s via %s: %v", sc.name, t.name, err)
				}
				res.samples[sc.name][t.name] = append(res.samples[sc.name][t.name], s)
				logf("%-16s %-13s rep %d: %s", sc.name, t.name, r+1, s.brief(sc))
				settle(targets)
			}
		}
		stopProfiles()
	}
	if want(o.scenarios, memScenario) {
		for r := range o.reps {
			for i := range targets {
				t := targets[(i+r)%len(targets)]
				if t.child == nil {
					continue
				}
				var heapProfile string
				if o.profileDir != "" && r == 0 {
					heapProfile, _ = filepath.Abs(filepath.Join(o.profileDir, memScenario+"-"+t.name+".heap"))
				}
				heap, stack, idle, err := memPerConn(e, t, o.idleConns, heapProfile)
				if err != nil {
					return nil, fmt.Errorf("%s via %s: %v", memScenario, t.name, err)
				}
				res.mem[t.name] = append(res.mem[t.name], [3]float64{heap, stack, idle})
				logf("%-16s %-13s rep %d: %.0f B heap, %.0f B stacks per connection; %.1f%% of a core while idle", memScenario, t.name, r+1, heap, stack, 100*idle)
				settle(targets)
			}
		}
	}
	if want(o.scenarios, slowScenario) && o.slowClients > 0 {
		for r := range o.reps {
			for i := range targets {
				t := targets[(i+r)%len(targets)]
				if t.child == nil {
					continue
				}
				s, err := slowClients(e, t, o.slowClients, o.slowSettle)
				if err != nil {
					return nil, fmt.Errorf("%s via %s: %v", slowScenario, t.name, err)
				}
				res.slow[t.name] = append(res.slow[t.name], s)
				logf("%-16s %-13s rep %d: RSS %.0f MiB (+%.0f), kernel TCP memory +%.0f MiB; per client: read %.1f KB/s, queued %.0f KiB to it and %.0f KiB from the upstream in the proxy's sockets, %.0f KiB in its own, %.0f KiB in the upstream's; %d errors",
					slowScenario, t.name, r+1, mib(s.rss), mib(s.rssGrowth), mib(s.tcpMem),
					s.readRate/1e3, perClientKiB(s.toClients, o.slowClients), perClientKiB(s.fromUpstream, o.slowClients),
					perClientKiB(s.inClients, o.slowClients), perClientKiB(s.inUpstream, o.slowClients), s.errs)
				settle(targets)
			}
		}
	}
	if watchers != nil {
		res.hubNote = watchers.summary()
	}
	res.notes = notes
	return res, nil
}

// flagSet reports whether the named flag was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// settle waits until every proxy has been nearly idle (under 5% of a core)
// for 100 ms, for at most 30 seconds, so that what a run left behind (closing
// connections, certificates still being generated for handshakes the client
// gave up on) does not slow the next run down.
func settle(targets []*target) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		before := make([]int64, len(targets))
		for i, t := range targets {
			if t.child != nil {
				s, _ := t.child.stats()
				before[i] = s.CPUNanos
			}
		}
		time.Sleep(100 * time.Millisecond)
		busy := false
		for i, t := range targets {
			if t.child != nil {
				s, _ := t.child.stats()
				busy = busy || s.CPUNanos-before[i] > int64(5*time.Millisecond)
			}
		}
		if !busy {
			return
		}
	}
}

// startProfiles starts a CPU profile in every child for one scenario and
// returns what stops them.
func startProfiles(dir, scenario string, targets []*target, logf func(string, ...any)) func() {
	if dir == "" {
		return func() {}
	}
	var started []*target
	for _, t := range targets {
		if t.child == nil {
			continue
		}
		path, _ := filepath.Abs(filepath.Join(dir, scenario+"-"+t.name+".pprof"))
		if err := t.child.command("profile "+path, nil); err != nil {
			logf("profile of %s: %v", t.name, err)
			continue
		}
		started = append(started, t)
	}
	return func() {
		for _, t := range started {
			_ = t.child.command("stop-profile", nil)
		}
	}
}

// buildPeer builds the go-mitmproxy child from its own module and returns
// the binary's path.
func buildPeer(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "proxywatch-bench-peer")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(tmp, "go-mitmproxy-child")
	cmd := exec.Command(goTool(), "build", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("go build: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// goTool is the go command: $GO (as make sets it) or go on the PATH.
func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
