package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"

	"github.com/elazarl/goproxy"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
)

// Every proxy under test runs in a child process of this same binary, so
// that its CPU time and memory are its own: the upstreams, the load
// generators and the dashboard clients stay in the parent. The parent starts
// the child with the environment variables below, reads one hello line from
// its stdout, then drives it with one-line commands on stdin (see
// serveCommands). The child exits when its stdin closes.
//
// The same protocol is spoken by the go-mitmproxy child in ./peers, which
// is a separate module so that the root module does not depend on it.
const (
	envChild  = "PROXYWATCH_BENCH_CHILD"  // the kind of proxy to run
	envConfig = "PROXYWATCH_BENCH_CONFIG" // childConfig as JSON
)

// The kinds of proxy a child runs.
const (
	kindBare  = "bare"  // goproxy v1.9.3 as NewProxyHttpServer makes it
	kindTuned = "tuned" // goproxy with proxywatch's transport and a MITM leaf cache, unobserved
	kindPW    = "pw"    // proxywatch, default options, fully observed through a hub
	kindPeer  = "go-mitmproxy"
)

// childConfig is what a child needs to know.
type childConfig struct {
	// MITMHost is the host:port whose CONNECTs are decrypted; every other
	// CONNECT is passed through as a tunnel.
	MITMHost string
	// UpstreamCA is the PEM certificate of the upstreams' TLS servers, for
	// the proxies that verify upstream certificates.
	UpstreamCA []byte
	// CADir is where proxywatch.LoadOrCreateCA keeps the MITM CA shared by
	// the tuned and pw kinds.
	CADir string
}

// childHello is the first line a child writes.
type childHello struct {
	Proxy string // host:port of the proxy listener
	Hub   string // host:port of the hub (pw only)
	Token string // the hub's secret (pw only)
	CA    []byte // PEM of the certificate that signs MITM leaves
	Error string // set when the child could not start
}

// childStats is a child's answer to "stats" and "mem".
type childStats struct {
	CPUNanos   int64  // user+system CPU time of the process so far
	HeapInuse  uint64 // runtime.MemStats.HeapInuse
	StackInuse uint64 // runtime.MemStats.StackInuse
	Goroutines int
}

// runChild runs the proxy kind named by the environment, and reports
// whether this process is a child at all.
func runChild() bool {
	kind := os.Getenv(envChild)
	if kind == "" {
		return false
	}
	var cfg childConfig
	if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &cfg); err != nil {
		fail(fmt.Errorf("bad %s: %v", envConfig, err))
	}
	hello, err := startProxy(kind, cfg)
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(hello); err != nil {
		os.Exit(1)
	}
	serveCommands(os.Stdin, os.Stdout)
	return true
}

func fail(err error) {
	_ = json.NewEncoder(os.Stdout).Encode(childHello{Error: err.Error()})
	os.Exit(1)
}

// startProxy starts the proxy of the given kind on a loopback listener.
// Nothing is ever shut down: the process exits when the parent is done.
func startProxy(kind string, cfg childConfig) (childHello, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return childHello{}, err
	}
	hello := childHello{Proxy: l.Addr().String()}
	upstreamCAs, err := parseCerts(cfg.UpstreamCA)
	if err != nil {
		return childHello{}, err
	}
	isMITM := func(host string) bool { return host == cfg.MITMHost }

	switch kind {
	case kindBare:
		// Everything as goproxy makes it: two idle upstream connections per
		// host, upstream certificates not verified, and MITM with goproxy's
		// built-in CA and no certificate cache (MitmConnect).
		gp := goproxy.NewProxyHttpServer()
		gp.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
			if isMITM(host) {
				return goproxy.MitmConnect, host
			}
			return nil, ""
		})
		hello.CA = certPEM(goproxy.GoproxyCa.Certificate[0])
		go http.Serve(l, gp)

	case kindTuned:
		// goproxy, unobserved, with the very transport proxywatch's defaults
		// give (taken from a Proxy that is never served) and a leaf cache for
		// MITM signed by the same kind of CA: the baseline for the cost of
		// observation.
		ca, err := proxywatch.LoadOrCreateCA(cfg.CADir)
		if err != nil {
			return childHello{}, err
		}
		gp := goproxy.NewProxyHttpServer()
		gp.Tr = proxywatch.New(&proxywatch.Options{UpstreamCAs: upstreamCAs}).GoProxy().Tr
		gp.CertStore = &certStore{certs: make(map[string]*tls.Certificate)}
		mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(ca)}
		gp.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
			if isMITM(host) {
				return mitm, host
			}
			return nil, ""
		})
		hello.CA = proxywatch.CACertPEM(ca)
		go http.Serve(l, gp)

	case kindPW:
		// proxywatch with its default options, everything observed: the
		// registry and sampler, the log sink, and a hub whose subscribers the
		// parent connects.
		ca, err := proxywatch.LoadOrCreateCA(cfg.CADir)
		if err != nil {
			return childHello{}, err
		}
		p := proxywatch.New(&proxywatch.Options{
			UpstreamCAs: upstreamCAs,
			MITM:        &proxywatch.MITM{CA: ca, Match: isMITM},
		})
		h := hub.New(p, nil)
		hl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return childHello{}, err
		}
		go http.Serve(hl, h)
		go p.Serve(l)
		hello.Hub, hello.Token = hl.Addr().String(), h.Token()
		hello.CA = proxywatch.CACertPEM(ca)

	default:
		return childHello{}, fmt.Errorf("unknown proxy kind %q", kind)
	}
	return hello, nil
}

// certStore is the simplest goproxy.CertStorage: a map, generated once per
// host.
type certStore struct {
	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

func (s *certStore) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.certs[host]; ok {
		return c, nil
	}
	c, err := gen()
	if err != nil {
		return nil, err
	}
	s.certs[host] = c
	return c, nil
}

// serveCommands answers the parent's commands until in closes:
//
//	stats              CPU time, heap and stack in use, goroutines
//	mem                the same after two garbage collections
//	profile PATH       start a CPU profile written to PATH
//	stop-profile       stop it
//	sample-all-allocs  record every allocation from now on in heap profiles
//	heap-profile PATH  write a heap profile (after a GC) to PATH
//	free-memory        collect garbage and return what it can to the system
//
// Each answer is one JSON line ("{}" for the profile commands, or
// {"Error": ...}).
func serveCommands(in io.Reader, out io.Writer) {
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	var prof *os.File
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch cmd {
		case "stats":
			_ = enc.Encode(readStats(false))
		case "mem":
			_ = enc.Encode(readStats(true))
		case "profile":
			f, err := os.Create(arg)
			if err == nil {
				err = pprof.StartCPUProfile(f)
			}
			if err != nil {
				_ = enc.Encode(map[string]string{"Error": err.Error()})
				continue
			}
			prof = f
			_ = enc.Encode(struct{}{})
		case "sample-all-allocs":
			runtime.MemProfileRate = 1 // for the heap profile of what follows
			_ = enc.Encode(struct{}{})
		case "heap-profile":
			runtime.GC()
			f, err := os.Create(arg)
			if err == nil {
				err = pprof.WriteHeapProfile(f)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				_ = enc.Encode(map[string]string{"Error": err.Error()})
				continue
			}
			_ = enc.Encode(struct{}{})
		case "free-memory":
			debug.FreeOSMemory()
			_ = enc.Encode(struct{}{})
		case "stop-profile":
			if prof != nil {
				pprof.StopCPUProfile()
				_ = prof.Close()
				prof = nil
			}
			_ = enc.Encode(struct{}{})
		default:
			_ = enc.Encode(map[string]string{"Error": "unknown command " + cmd})
		}
	}
	if prof != nil {
		pprof.StopCPUProfile()
		_ = prof.Close()
	}
}

func readStats(gc bool) childStats {
	if gc {
		runtime.GC()
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return childStats{
		CPUNanos:   ru.Utime.Nano() + ru.Stime.Nano(),
		HeapInuse:  ms.HeapInuse,
		StackInuse: ms.StackInuse,
		Goroutines: runtime.NumGoroutine(),
	}
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func parseCerts(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for len(pemBytes) > 0 {
		var b *pem.Block
		b, pemBytes = pem.Decode(pemBytes)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate in PEM")
	}
	return out, nil
}
