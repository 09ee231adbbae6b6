// Command peers runs go-mitmproxy (github.com/lqqyt2423/go-mitmproxy) as a
// child of the proxywatch benchmark suite (../main.go), speaking the same
// child protocol: a hello line with its address and CA on stdout, then
// one-line commands on stdin until stdin closes. It is a module of its own so
// that proxywatch's root module does not depend on go-mitmproxy; the suite
// builds it with go build.
//
// go-mitmproxy runs as its library makes it, with no addon (its command adds
// a per-request log line and a web UI; both are left out, in its favour): it
// decrypts the CONNECTs to the suite's MITM upstream and passes the others
// through, and logs warnings only. It runs with SslInsecure, that is without
// verifying upstream certificates, also in its favour: it cannot verify an
// upstream addressed by IP, as the suite's are, because it hands the
// client's SNI (none, for an IP) to its upstream handshake as ServerName.
package main

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/lqqyt2423/go-mitmproxy/cert"
	"github.com/lqqyt2423/go-mitmproxy/proxy"
	log "github.com/sirupsen/logrus"
)

// The child protocol, as in ../child.go.
const envConfig = "PROXYWATCH_BENCH_CONFIG"

type childConfig struct {
	MITMHost   string
	UpstreamCA []byte
	CADir      string
}

type childHello struct {
	Proxy string
	Hub   string
	Token string
	CA    []byte
	Error string
}

type childStats struct {
	CPUNanos   int64
	HeapInuse  uint64
	StackInuse uint64
	Goroutines int
}

func main() {
	hello, err := start()
	if err != nil {
		hello = childHello{Error: err.Error()}
	}
	if err := json.NewEncoder(os.Stdout).Encode(hello); err == nil && hello.Error == "" {
		serveCommands(os.Stdin, os.Stdout)
	}
}

func start() (childHello, error) {
	var cfg childConfig
	if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &cfg); err != nil {
		return childHello{}, fmt.Errorf("bad %s: %v", envConfig, err)
	}
	log.SetLevel(log.WarnLevel)
	log.SetOutput(os.Stderr)

	// go-mitmproxy listens itself: find a free port, then give it that.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return childHello{}, err
	}
	addr := l.Addr().String()
	_ = l.Close()

	p, err := proxy.NewProxy(&proxy.Options{
		Addr:              addr,
		StreamLargeBodies: 5 << 20, // its command's default
		SslInsecure:       true,
		NewCaFunc:         cert.NewSelfSignCAMemory,
	})
	if err != nil {
		return childHello{}, err
	}
	p.SetShouldInterceptRule(func(req *http.Request) bool { return req.Host == cfg.MITMHost })
	go func() {
		if err := p.Start(); err != nil {
			log.Error(err)
		}
	}()
	// Wait until it accepts.
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			break
		}
		if i == 200 {
			return childHello{}, fmt.Errorf("go-mitmproxy does not listen on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ca := p.GetCertificate()
	return childHello{Proxy: addr, CA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})}, nil
}

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
			runtime.MemProfileRate = 1
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
