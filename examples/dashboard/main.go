// Command dashboard runs a proxywatch proxy and serves the stock dashboard:
// live traffic, connections (closable) and logs in a browser.
//
//	go run ./examples/dashboard
//
// The proxy listens on 127.0.0.1:8080 and the dashboard on
// http://127.0.0.1:8000; the dashboard URL printed at start carries the secret.
// Run with -h for every flag.
package main

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	proxyAddr, uiAddr string
	token             string
	mitm              bool
	caDir             string
	upstreamCA        string
}

func parseFlags(args []string) (config, error) {
	var c config
	defaultCADir, err := proxywatch.DefaultCADir()
	if err != nil {
		defaultCADir = "proxywatch-ca"
	}
	fl := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fl.StringVar(&c.proxyAddr, "proxy", "127.0.0.1:8080", "`ADDR` the proxy listens on")
	fl.StringVar(&c.uiAddr, "ui", "127.0.0.1:8000", "`ADDR` the dashboard listens on (keep it on loopback unless you mean it)")
	fl.StringVar(&c.token, "token", os.Getenv("PROXYWATCH_TOKEN"), "`SECRET` the dashboard asks for (default: $PROXYWATCH_TOKEN, else a random one printed at start)")
	fl.BoolVar(&c.mitm, "mitm", false, "decrypt HTTPS with a per-installation CA (off by default)")
	fl.StringVar(&c.caDir, "ca-dir", defaultCADir, "`DIR` where the MITM CA is generated once and kept")
	fl.StringVar(&c.upstreamCA, "upstream-ca", "", "PEM `FILE` of extra root CAs trusted for upstream TLS (private or test upstreams)")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: dashboard [flags]\n\nRuns a forward proxy and a live dashboard of its traffic, connections and logs.\n\n")
		fl.PrintDefaults()
	}
	return c, fl.Parse(args)
}

func run(args []string) error {
	c, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	opts := &proxywatch.Options{}
	if c.upstreamCA != "" {
		if opts.UpstreamCAs, err = loadCerts(c.upstreamCA); err != nil {
			return err
		}
	}
	if c.mitm {
		ca, err := proxywatch.LoadOrCreateCA(c.caDir)
		if err != nil {
			return err
		}
		opts.MITM = &proxywatch.MITM{CA: ca}
	}
	p := proxywatch.New(opts)
	slog.SetDefault(slog.New(p.SlogHandler())) // this program's own logs reach the dashboard too
	h := hub.New(p, &hub.Options{Token: c.token})

	proxyL, err := net.Listen("tcp", c.proxyAddr)
	if err != nil {
		return err
	}
	uiL, err := net.Listen("tcp", c.uiAddr)
	if err != nil {
		proxyL.Close()
		return err
	}
	ui := &http.Server{
		Handler:           newUIHandler(h, opts.MITM),
		ReadHeaderTimeout: 10 * time.Second,
	}

	fmt.Printf("proxy:     http://%s   (e.g. curl -x http://%s http://example.com/)\n", proxyL.Addr(), proxyL.Addr())
	fmt.Printf("dashboard: http://%s/#token=%s\n", uiL.Addr(), h.Token())
	if c.mitm {
		fmt.Printf("MITM is on. CA certificate: %s\n", filepath.Join(c.caDir, "ca.pem"))
		fmt.Printf("  (also at http://%s/ca.pem). Trust it in the client you proxy, e.g. curl --cacert %s,\n", uiL.Addr(), filepath.Join(c.caDir, "ca.pem"))
		fmt.Printf("  or import it as a certificate authority in your browser. Its key never leaves %s.\n", c.caDir)
	}

	errc := make(chan error, 2)
	go func() { errc <- p.Serve(proxyL) }()
	go func() { errc <- ui.Serve(uiL) }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
		fmt.Println("shutting down...")
	case err = <-errc:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ui.Shutdown(shutdown)
	_ = h.Close()
	_ = p.Shutdown(shutdown)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// loadCerts reads every certificate of a PEM file.
func loadCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return certs, nil
}

// newUIHandler serves the embedded dashboard, the hub at /start (the seed's
// path), /auth/check for the login screen and, with MITM, the CA certificate.
func newUIHandler(h *hub.Hub, mitm *proxywatch.MITM) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/start", h)
	mux.HandleFunc("/auth/check", func(w http.ResponseWriter, r *http.Request) {
		// The login screen asks here whether a secret is right: a refused
		// WebSocket upgrade shows no status to a page.
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.Token())) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if mitm != nil {
		cert := proxywatch.CACertPEM(mitm.CA)
		mux.HandleFunc("/ca.pem", func(w http.ResponseWriter, r *http.Request) {
			// The CA certificate is public (its key is not served): no secret
			// needed to download it onto the device that should trust it.
			w.Header().Set("Content-Type", "application/x-pem-file")
			w.Header().Set("Content-Disposition", `attachment; filename="proxywatch-ca.pem"`)
			w.Write(cert)
		})
	}
	dist, err := fs.Sub(uiFiles, "ui/dist")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	mux.Handle("/", http.FileServerFS(dist))
	return securityHeaders(mux)
}

// securityHeaders keeps the page from leaking its secret (no Referer), from
// being framed, and from loading anything but its own files.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}
