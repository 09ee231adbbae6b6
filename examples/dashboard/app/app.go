// Package app is the dashboard program (examples/dashboard) as a package, so
// that variants can add to it: exporters/prometheus/cmd/dashboard adds a
// -metrics flag without bringing Prometheus into the root module.
package app

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
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
	"github.com/proxywatch/proxywatch/examples/dashboard/ui"
	"github.com/proxywatch/proxywatch/hub"
	"github.com/proxywatch/proxywatch/hub/clash"
	"github.com/proxywatch/proxywatch/internal/webauth"
)

// Extension adds flags and servers to the dashboard program. The zero value
// adds nothing.
type Extension struct {
	// Flags registers extra flags.
	Flags func(*flag.FlagSet)

	// Start runs once the proxy exists, before it serves; the returned stop
	// function runs at shutdown. Nil means nothing to start.
	Start func(p *proxywatch.Proxy) (stop func(), err error)
}

// Main runs the dashboard program with the process's arguments and exits.
func Main(ext *Extension) {
	if err := Run(os.Args[1:], ext); err != nil {
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
	clashAddr         string
	clashOrigins      string
}

func parseFlags(args []string, ext *Extension) (config, error) {
	var c config
	defaultCADir, err := proxywatch.DefaultCADir()
	if err != nil {
		defaultCADir = "proxywatch-ca"
	}
	fl := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	fl.StringVar(&c.proxyAddr, "proxy", "127.0.0.1:8080", "`ADDR` the proxy listens on")
	fl.StringVar(&c.uiAddr, "ui", "127.0.0.1:8000", "`ADDR` the dashboard listens on (keep it on loopback unless you mean it)")
	fl.StringVar(&c.token, "token", "", "`SECRET` the dashboard asks for (default: $PROXYWATCH_TOKEN, else a random one printed at start)")
	fl.BoolVar(&c.mitm, "mitm", false, "decrypt HTTPS with a per-installation CA (off by default)")
	fl.StringVar(&c.caDir, "ca-dir", defaultCADir, "`DIR` where the MITM CA is generated once and kept")
	fl.StringVar(&c.upstreamCA, "upstream-ca", "", "PEM `FILE` of extra root CAs trusted for upstream TLS (private or test upstreams)")
	fl.StringVar(&c.clashAddr, "clash-api", "", "`ADDR` to serve the Clash/mihomo controller API on, for yacd, metacubexd or zashboard (off when empty; its secret is the dashboard's)")
	fl.StringVar(&c.clashOrigins, "clash-origins", "", "comma-separated dashboard `ORIGINS` allowed to use the Clash API from a browser, e.g. http://127.0.0.1:5173")
	if ext.Flags != nil {
		ext.Flags(fl)
	}
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: dashboard [flags]\n\nRuns a forward proxy and a live dashboard of its traffic, connections and logs.\n\n")
		fl.PrintDefaults()
	}
	err = fl.Parse(args)
	if c.token == "" {
		// Read here, not as the flag's default, so that -h never prints it.
		c.token = os.Getenv("PROXYWATCH_TOKEN")
	}
	return c, err
}

// Run runs the dashboard program with args (without the program name) until
// it is interrupted.
func Run(args []string, ext *Extension) error {
	if ext == nil {
		ext = &Extension{}
	}
	c, err := parseFlags(args, ext)
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
	if ext.Start != nil {
		stopExt, err := ext.Start(p)
		if err != nil {
			h.Close()
			p.Close()
			return err
		}
		defer stopExt()
	}

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

	errc := make(chan error, 3)
	var clashAPI *clash.API
	var clashSrv *http.Server
	if c.clashAddr != "" {
		clashL, err := net.Listen("tcp", c.clashAddr)
		if err != nil {
			proxyL.Close()
			uiL.Close()
			return err
		}
		var origins []string
		if c.clashOrigins != "" {
			origins = strings.Split(c.clashOrigins, ",")
		}
		clashAPI = clash.New(p, &clash.Options{Token: h.Token(), AllowedOrigins: origins, ProxyAddr: proxyL.Addr().String()})
		clashSrv = &http.Server{Handler: clashAPI, ReadHeaderTimeout: 10 * time.Second}
		fmt.Printf("clash API: http://%s   (secret: the dashboard's)\n", clashL.Addr())
		go func() { errc <- clashSrv.Serve(clashL) }()
	}
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
	if clashAPI != nil {
		_ = clashAPI.Close() // first: Shutdown would wait for its streaming GETs
		_ = clashSrv.Shutdown(shutdown)
	}
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
	auth := webauth.New(webauth.Policy{Token: h.Token()})
	mux.HandleFunc("/auth/check", func(w http.ResponseWriter, r *http.Request) {
		// The login screen asks here whether a secret is right: a refused
		// WebSocket upgrade shows no status to a page.
		if !auth.Matches(r) {
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
	mux.Handle("/", http.FileServerFS(ui.FS()))
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
