package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// upstreams are the servers every scenario talks to, directly or through a
// proxy: one plain-HTTP server (which also echoes WebSockets), two HTTPS
// servers with the same handlers (one whose CONNECTs the proxies pass through,
// one they decrypt), a plain-HTTP server with the same handlers whose sockets
// hold little unsent, and a TCP server that holds connections open.
type upstreams struct {
	plain  string // host:port
	tunnel string // host:port of the HTTPS server reached through tunnels
	mitm   string // host:port of the HTTPS server whose CONNECTs are decrypted
	hold   string // host:port of the TCP server that holds connections
	// slow is the host:port of the plain-HTTP server for the slow-clients
	// scenario. Its sockets hold at most slowUpstreamUnsent bytes unsent: a
	// real upstream's buffers are on another machine, while here each slow
	// download would otherwise hold about 4 MiB of this machine's kernel
	// memory whatever the proxy, past the kernel's limit (net.ipv4.tcp_mem)
	// for a thousand of them.
	slow    string
	slowSrv *slowListener
	certPEM []byte
	roots   *x509.CertPool // trusts the HTTPS servers

	closers []io.Closer
}

// smallBody is the size of the small responses.
const smallBody = 1024

// chunk is the buffer the bulk handlers write from and read into.
var chunk = func() []byte {
	b := make([]byte, 256<<10)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}()

func startUpstreams() (*upstreams, error) {
	u := &upstreams{}
	mux := http.NewServeMux()
	small := chunk[:smallBody]
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(smallBody))
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(small)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		for n > 0 {
			b := chunk[:min(int64(len(chunk)), n)]
			if _, err := w.Write(b); err != nil {
				return
			}
			n -= int64(len(b))
		}
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 256<<10)
		n, _ := io.CopyBuffer(io.Discard, r.Body, buf)
		_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
	})
	upgrader := websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			t, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(t, msg); err != nil {
				return
			}
		}
	})

	cert, certPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	u.certPEM = certPEM
	u.roots = x509.NewCertPool()
	u.roots.AppendCertsFromPEM(certPEM)

	serve := func(useTLS bool, wrap func(net.Listener) net.Listener) (string, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		if wrap != nil {
			l = wrap(l)
		}
		// Clients cut off at the end of a window make handshake errors
		// that say nothing about the proxies: not logged.
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
		if useTLS {
			// HTTP/1.1 only, as through every proxy here.
			l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		}
		u.closers = append(u.closers, srv)
		go srv.Serve(l)
		return addr, nil
	}
	if u.plain, err = serve(false, nil); err != nil {
		return nil, err
	}
	if u.tunnel, err = serve(true, nil); err != nil {
		return nil, err
	}
	if u.mitm, err = serve(true, nil); err != nil {
		return nil, err
	}
	u.slow, err = serve(false, func(l net.Listener) net.Listener {
		u.slowSrv = &slowListener{Listener: l}
		return u.slowSrv
	})
	if err != nil {
		return nil, err
	}
	// The decrypted upstream is reached by name, so that clients send SNI:
	// go-mitmproxy names its leaf after the client's SNI alone, and has none
	// to give for an IP.
	u.mitm = strings.Replace(u.mitm, "127.0.0.1:", "localhost:", 1)

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u.closers = append(u.closers, hl)
	go func() {
		for {
			c, err := hl.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				_ = c.Close()
			}()
		}
	}()
	u.hold = hl.Addr().String()
	return u, nil
}

func (u *upstreams) close() {
	for _, c := range u.closers {
		_ = c.Close()
	}
}

// selfSigned makes the upstreams' certificate: ECDSA P-256 for 127.0.0.1.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "proxywatch bench upstream"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM(der), nil
}

// slowUpstreamUnsent is what a socket of the slow upstream may hold unsent:
// 32 KiB, as proxywatch's own sockets.
const slowUpstreamUnsent = 32 << 10

// slowListener is the slow upstream's listener: it limits what each accepted
// socket holds unsent, and counts the connections not yet closed, so that a
// scenario can wait until the server is done with them.
type slowListener struct {
	net.Listener
	open atomic.Int64
}

func (l *slowListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		limitUnsent(tc, slowUpstreamUnsent)
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

// countedConn takes itself off its listener's count when it is first closed.
type countedConn struct {
	net.Conn
	l    *slowListener
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
