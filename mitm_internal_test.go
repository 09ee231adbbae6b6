package proxywatch

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elazarl/goproxy"
	"go.uber.org/goleak"
)

// newTestCA returns a CA made by LoadOrCreateCA in a fresh directory.
func newTestCA(t testing.TB) *tls.Certificate {
	t.Helper()
	ca, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func caPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestLoadOrCreateCACreatesAndReloads(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("checks POSIX file modes")
	}
	dir := filepath.Join(t.TempDir(), "nested", "ca")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{
		dir:                              0o700,
		filepath.Join(dir, "ca-key.pem"): 0o600,
		filepath.Join(dir, "ca.pem"):     0o644,
	} {
		if got := fileMode(t, path); got != want {
			t.Errorf("mode of %s = %#o, want %#o", filepath.Base(path), got, want)
		}
	}

	leaf := ca.Leaf
	if leaf == nil {
		t.Fatal("Leaf not set")
	}
	host, _ := os.Hostname()
	wantCN := "proxywatch CA " + host + " " + time.Now().UTC().Format("2006-01-02")
	if leaf.Subject.CommonName != wantCN {
		// The date may have changed during the call; accept yesterday's.
		if y := "proxywatch CA " + host + " " + time.Now().UTC().Add(-24*time.Hour).Format("2006-01-02"); leaf.Subject.CommonName != y {
			t.Errorf("CN = %q, want %q", leaf.Subject.CommonName, wantCN)
		}
	}
	if !leaf.IsCA || !leaf.BasicConstraintsValid || leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("not a CA: IsCA=%v BasicConstraintsValid=%v KeyUsage=%v", leaf.IsCA, leaf.BasicConstraintsValid, leaf.KeyUsage)
	}
	if !leaf.MaxPathLenZero || leaf.MaxPathLen != 0 {
		t.Errorf("MaxPathLen = %d (zero %v), want 0: the CA should sign leaves only", leaf.MaxPathLen, leaf.MaxPathLenZero)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if years := leaf.NotAfter.Sub(leaf.NotBefore).Hours() / 24 / 365; years < 9.99 || years > 10.01 {
		t.Errorf("validity %.2f years, want 10", years)
	}
	if err := leaf.CheckSignatureFrom(leaf); err != nil {
		t.Errorf("not self-signed: %v", err)
	}

	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Certificate) != 1 || !bytes.Equal(again.Certificate[0], ca.Certificate[0]) {
		t.Error("reloaded certificate differs")
	}
	if !bytes.Equal(again.Leaf.Raw, ca.Leaf.Raw) {
		t.Error("reloaded Leaf differs")
	}
	k1, _ := ca.PrivateKey.(*ecdsa.PrivateKey)
	k2, _ := again.PrivateKey.(*ecdsa.PrivateKey)
	if k1 == nil || k2 == nil || !k1.Equal(k2) {
		t.Errorf("reloaded key differs: %T vs %T", ca.PrivateKey, again.PrivateKey)
	}

	other := newTestCA(t)
	if bytes.Equal(other.Certificate[0], ca.Certificate[0]) {
		t.Error("two directories gave the same CA: it must be per installation")
	}
}

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateCARefuses(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("checks POSIX file modes")
	}
	// A good pair to copy from and a second, unrelated one.
	goodDir := filepath.Join(t.TempDir(), "good")
	if _, err := LoadOrCreateCA(goodDir); err != nil {
		t.Fatal(err)
	}
	otherDir := filepath.Join(t.TempDir(), "other")
	if _, err := LoadOrCreateCA(otherDir); err != nil {
		t.Fatal(err)
	}
	read := func(dir, name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	goodCert, goodKey := read(goodDir, "ca.pem"), read(goodDir, "ca-key.pem")
	otherKey := read(otherDir, "ca-key.pem")

	// A leaf (not a CA) and its key.
	s, err := newLeafSigner(newTestCA(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := s.generate("leaf.test")
	if err != nil {
		t.Fatal(err)
	}
	leafKeyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	leafCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})
	leafKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: leafKeyDER})

	// An expired CA.
	expired, expiredKey, err := generateCA("expired", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		cert, key []byte // nil: file absent
		keyMode   fs.FileMode
		wantErr   string
	}{
		{"key mode 0644", goodCert, goodKey, 0o644, "mode 0644"},
		{"key mode 0640", goodCert, goodKey, 0o640, "group or others"},
		{"key mode 0602", goodCert, goodKey, 0o602, "group or others"},
		{"mismatched pair", goodCert, otherKey, 0o600, "does not match"},
		{"key missing", goodCert, nil, 0o600, "its key"},
		{"cert missing", nil, goodKey, 0o600, "its certificate"},
		{"garbage cert", []byte("not a certificate\n"), goodKey, 0o600, "no PEM CERTIFICATE"},
		{"garbage key", goodCert, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600, "CA pair"},
		{"no key PEM", goodCert, []byte("hello"), 0o600, "no PEM PRIVATE KEY"},
		{"not a CA", leafCert, leafKey, 0o600, "not a CA"},
		{"expired", CACertPEM(expired), expiredKey, 0o600, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.cert != nil {
				writeFile(t, filepath.Join(dir, "ca.pem"), tc.cert, 0o644)
			}
			if tc.key != nil {
				writeFile(t, filepath.Join(dir, "ca-key.pem"), tc.key, tc.keyMode)
			}
			ca, err := LoadOrCreateCA(dir)
			if err == nil {
				t.Fatalf("LoadOrCreateCA accepted it: %v", ca.Leaf.Subject)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
			// Nothing was created or overwritten.
			entries, _ := os.ReadDir(dir)
			if want := btoi(tc.cert != nil) + btoi(tc.key != nil); len(entries) != want {
				t.Errorf("%d files in dir after refusal, want %d", len(entries), want)
			}
			if tc.key != nil && !bytes.Equal(read(dir, "ca-key.pem"), tc.key) {
				t.Error("key file changed")
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestCACertPEMAndDefaultDir(t *testing.T) {
	ca := newTestCA(t)
	b, rest := pem.Decode(CACertPEM(ca))
	if b == nil || b.Type != "CERTIFICATE" || len(rest) != 0 || !bytes.Equal(b.Bytes, ca.Certificate[0]) {
		t.Errorf("CACertPEM does not hold exactly the CA certificate")
	}
	if CACertPEM(nil) != nil || CACertPEM(&tls.Certificate{}) != nil {
		t.Error("CACertPEM of nothing should be nil")
	}

	if runtime.GOOS != "linux" {
		return
	}
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	dir, err := DefaultCADir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cfg, "proxywatch", "ca"); dir != want {
		t.Errorf("DefaultCADir = %q, want %q", dir, want)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "")
	if _, err := DefaultCADir(); err == nil {
		t.Error("DefaultCADir without HOME or XDG_CONFIG_HOME: no error")
	}
}

// tlsConfigFor runs m's CONNECT handler for host as goproxy would and returns
// the server TLS configuration of the resulting MITM action.
func tlsConfigFor(t testing.TB, m *MITM, host string) *tls.Config {
	t.Helper()
	action, newHost := m.connectHandler().HandleConnect(host, &goproxy.ProxyCtx{})
	if action == nil || action.Action != goproxy.ConnectMitm || action.TLSConfig == nil {
		t.Fatalf("CONNECT %s: action %+v, want ConnectMitm with a TLSConfig", host, action)
	}
	if newHost != host {
		t.Fatalf("CONNECT %s rewritten to %q", host, newHost)
	}
	cfg, err := action.TLSConfig(host, &goproxy.ProxyCtx{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// handshake serves one TLS connection with srvCfg on loopback, dials it with
// cliCfg, and returns the client's connection state and the line the server
// wrote after the handshake.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (tls.ConnectionState, string, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		sc := tls.Server(c, srvCfg)
		if sc.Handshake() == nil {
			_, _ = io.WriteString(sc, "hello over TLS\n")
		}
	}()
	defer func() { <-srvDone }()

	conn, err := tls.Dial("tcp", l.Addr().String(), cliCfg)
	if err != nil {
		return tls.ConnectionState{}, "", err
	}
	defer conn.Close()
	line, err := io.ReadAll(conn)
	if err != nil {
		return tls.ConnectionState{}, "", err
	}
	return conn.ConnectionState(), string(line), nil
}

func TestMITMHandshake(t *testing.T) {
	ca := newTestCA(t)
	m := &MITM{CA: ca}
	roots := caPool(ca.Leaf)

	for _, tc := range []struct {
		name, connect, serverName string // serverName: what the client sends and verifies
		wantDNS                   string
		wantIP                    net.IP
	}{
		{"dns name", "www.example.test:443", "www.example.test", "www.example.test", nil},
		{"dns name from SNI, not CONNECT", "10.0.0.1:443", "sni.example.test", "sni.example.test", nil},
		{"ip without SNI", "127.0.0.1:8443", "", "", net.IPv4(127, 0, 0, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli := &tls.Config{RootCAs: roots, ServerName: tc.serverName, NextProtos: []string{"h2", "http/1.1"}}
			if tc.serverName == "" {
				cli.ServerName = "127.0.0.1" // verified as an IP; Go sends no SNI for it
			}
			st, line, err := handshake(t, tlsConfigFor(t, m, tc.connect), cli)
			if err != nil {
				t.Fatal(err)
			}
			if line != "hello over TLS\n" {
				t.Errorf("read %q", line)
			}
			if st.NegotiatedProtocol != "http/1.1" {
				t.Errorf("ALPN %q, want http/1.1", st.NegotiatedProtocol)
			}
			leaf := st.PeerCertificates[0]
			if err := leaf.CheckSignatureFrom(ca.Leaf); err != nil {
				t.Errorf("leaf not signed by the CA: %v", err)
			}
			if tc.wantDNS != "" && (len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != tc.wantDNS || len(leaf.IPAddresses) != 0) {
				t.Errorf("SANs DNS=%v IP=%v, want DNS %s", leaf.DNSNames, leaf.IPAddresses, tc.wantDNS)
			}
			if tc.wantIP != nil && (len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(tc.wantIP) || len(leaf.DNSNames) != 0) {
				t.Errorf("SANs DNS=%v IP=%v, want IP %s", leaf.DNSNames, leaf.IPAddresses, tc.wantIP)
			}
			if len(st.PeerCertificates) != 2 || !st.PeerCertificates[1].Equal(ca.Leaf) {
				t.Errorf("chain of %d certificates, want leaf and CA", len(st.PeerCertificates))
			}
		})
	}

	t.Run("untrusting client fails", func(t *testing.T) {
		_, _, err := handshake(t, tlsConfigFor(t, m, "www.example.test:443"), &tls.Config{ServerName: "www.example.test", RootCAs: caPool(newTestCA(t).Leaf)})
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) {
			t.Errorf("handshake error %v, want an unknown authority", err)
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		_, _, err := handshake(t, tlsConfigFor(t, m, "www.example.test:443"), &tls.Config{ServerName: "www.example.test", RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Error("TLS 1.1 handshake succeeded")
		}
	})
}

func TestMITMTLSConfig(t *testing.T) {
	ca := newTestCA(t)
	cfg := tlsConfigFor(t, &MITM{CA: ca}, "[::1]:443")
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %#x", cfg.MinVersion)
	}
	if len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "http/1.1" {
		t.Errorf("NextProtos %q", cfg.NextProtos)
	}
	// No SNI: the CONNECT host, an IPv6 literal, without brackets or port.
	cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if ips := cert.Leaf.IPAddresses; len(ips) != 1 || !ips[0].Equal(net.IPv6loopback) {
		t.Errorf("IP SANs %v, want [::1]", ips)
	}
	// A CONNECT host without a port is used as it is, brackets removed.
	s, err := newLeafSigner(ca, 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = s.tlsConfig("[::2]").GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if ips := cert.Leaf.IPAddresses; len(ips) != 1 || !ips[0].Equal(net.ParseIP("::2")) {
		t.Errorf("IP SANs %v, want [::2]", ips)
	}
	// The SNI wins, lower-cased.
	cert, err = cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "API.Example.TEST"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.Leaf.DNSNames; len(got) != 1 || got[0] != "api.example.test" {
		t.Errorf("DNS SANs %v", got)
	}
	// Names no certificate should be made for.
	for _, bad := range []string{"a b.test", "évil.test", "x\x00.test", "*.test", strings.Repeat("a", 254)} {
		if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: bad}); err == nil {
			t.Errorf("signed a leaf for %q", bad)
		}
	}
}

func TestLeafProperties(t *testing.T) {
	// A CA that expires in 30 days: leaves must not outlive it.
	now := time.Now()
	short, _, err := generateCA("short-lived", now.Add(-time.Hour), now.Add(30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	long := newTestCA(t)
	for _, tc := range []struct {
		name      string
		ca        *tls.Certificate
		wantAfter time.Time
	}{
		{"ten-year CA", long, now.Add(365 * 24 * time.Hour)},
		{"30-day CA", short, short.Leaf.NotAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newLeafSigner(tc.ca, 0)
			if err != nil {
				t.Fatal(err)
			}
			s.now = func() time.Time { return now }
			a, err := s.generate("a.example.test")
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.generate("a.example.test")
			if err != nil {
				t.Fatal(err)
			}
			l := a.Leaf
			if !l.NotBefore.Equal(now.Add(-time.Hour).Truncate(time.Second)) {
				t.Errorf("NotBefore %v, want an hour before %v", l.NotBefore, now)
			}
			if !l.NotAfter.Equal(tc.wantAfter.Truncate(time.Second)) {
				t.Errorf("NotAfter %v, want %v", l.NotAfter, tc.wantAfter)
			}
			if l.SerialNumber.Sign() <= 0 || l.SerialNumber.Cmp(b.Leaf.SerialNumber) == 0 {
				t.Errorf("serials %v and %v: want positive and random", l.SerialNumber, b.Leaf.SerialNumber)
			}
			if k, ok := l.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
				t.Errorf("leaf key %T, want ECDSA P-256", l.PublicKey)
			}
			if l.IsCA {
				t.Error("leaf is a CA")
			}
			_, err = l.Verify(x509.VerifyOptions{
				DNSName:     "a.example.test",
				Roots:       caPool(tc.ca.Leaf),
				CurrentTime: now,
				KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				t.Errorf("leaf does not verify for server auth: %v", err)
			}
		})
	}
}

func TestLeafCache(t *testing.T) {
	ca := newTestCA(t)

	t.Run("same leaf for a host", func(t *testing.T) {
		s, err := newLeafSigner(ca, 0)
		if err != nil {
			t.Fatal(err)
		}
		a1, err := s.leaf(nil, "a.test")
		if err != nil {
			t.Fatal(err)
		}
		a2, _ := s.leaf(nil, "A.test")
		b, _ := s.leaf(nil, "b.test")
		if a1 != a2 {
			t.Error("second lookup of a.test generated a new leaf")
		}
		if a1 == b || b.Leaf.DNSNames[0] != "b.test" {
			t.Error("b.test did not get its own leaf")
		}
		if n := s.counts.Load(); n != 2 {
			t.Errorf("%d generations, want 2", n)
		}
	})

	t.Run("50 concurrent requests generate once", func(t *testing.T) {
		s, err := newLeafSigner(ca, 0)
		if err != nil {
			t.Fatal(err)
		}
		const n = 50
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			certs [n]*tls.Certificate
			errs  [n]error
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				certs[i], errs[i] = s.leaf(nil, "busy.test")
			}()
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if certs[i] != certs[0] {
				t.Fatalf("request %d got a different leaf", i)
			}
		}
		if g := s.counts.Load(); g != 1 {
			t.Errorf("%d generations for one host, want 1", g)
		}
		if len(s.inflight) != 0 {
			t.Errorf("%d generations still marked in flight", len(s.inflight))
		}
	})

	t.Run("a waiter stops when its handshake is canceled", func(t *testing.T) {
		s, err := newLeafSigner(ca, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Another handshake is generating slow.test and never finishes.
		s.inflight["slow.test"] = &leafCall{done: make(chan struct{})}
		canceled := make(chan struct{})
		close(canceled)
		if c, err := s.leaf(canceled, "slow.test"); c != nil || err == nil || !strings.Contains(err.Error(), "canceled") {
			t.Errorf("leaf = %v, %v; want a cancellation error", c, err)
		}
		if s.counts.Load() != 0 {
			t.Error("the waiter generated a leaf itself")
		}
	})

	t.Run("evicts least recently used beyond its bound", func(t *testing.T) {
		s, err := newLeafSigner(ca, 3)
		if err != nil {
			t.Fatal(err)
		}
		get := func(name string) *tls.Certificate {
			t.Helper()
			c, err := s.leaf(nil, name)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		a := get("a.test")
		get("b.test")
		get("c.test")
		if get("a.test") != a { // a is now the most recent; b the least
			t.Fatal("a.test not cached")
		}
		get("d.test") // evicts b
		if s.lru.Len() != 3 || len(s.byName) != 3 {
			t.Errorf("cache holds %d (%d), want 3", s.lru.Len(), len(s.byName))
		}
		before := s.counts.Load()
		if get("a.test") != a || get("c.test") == nil || get("d.test") == nil {
			t.Fatal("a.test evicted")
		}
		if g := s.counts.Load() - before; g != 0 {
			t.Errorf("a, c, d regenerated %d times", g)
		}
		get("b.test")
		if g := s.counts.Load() - before; g != 1 {
			t.Errorf("b.test: %d generations, want 1 (it was evicted)", g)
		}
	})

	t.Run("default bound", func(t *testing.T) {
		s, err := newLeafSigner(ca, 0)
		if err != nil {
			t.Fatal(err)
		}
		if s.max != 1024 {
			t.Errorf("default CacheSize %d, want 1024", s.max)
		}
	})

	t.Run("renews leaves near expiry", func(t *testing.T) {
		s, err := newLeafSigner(ca, 0)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		s.now = func() time.Time { return now }
		first, _ := s.leaf(nil, "old.test")
		now = first.Leaf.NotAfter.Add(-25 * time.Hour)
		if c, _ := s.leaf(nil, "old.test"); c != first {
			t.Error("leaf 25h from expiry was replaced")
		}
		now = first.Leaf.NotAfter.Add(-23 * time.Hour)
		renewed, err := s.leaf(nil, "old.test")
		if err != nil {
			t.Fatal(err)
		}
		if renewed == first || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
			t.Error("leaf 23h from expiry was not renewed")
		}
		if c, _ := s.leaf(nil, "old.test"); c != renewed || s.lru.Len() != 1 {
			t.Error("renewed leaf not cached in place of the old one")
		}
	})
}

func TestConnectHandlerMatch(t *testing.T) {
	ca := newTestCA(t)
	var asked []string
	m := &MITM{CA: ca, Match: func(host string) bool {
		asked = append(asked, host)
		return strings.HasSuffix(host, ".decrypt.test:443")
	}}
	h := m.connectHandler()
	if a, host := h.HandleConnect("api.decrypt.test:443", nil); a == nil || a.Action != goproxy.ConnectMitm || a.TLSConfig == nil || host != "api.decrypt.test:443" {
		t.Errorf("matched host: %+v %q", a, host)
	}
	if a, host := h.HandleConnect("bank.test:443", nil); a != nil || host != "" {
		t.Errorf("unmatched host: %+v %q, want nil and \"\"", a, host)
	}
	if fmt.Sprint(asked) != "[api.decrypt.test:443 bank.test:443]" {
		t.Errorf("Match saw %v", asked)
	}

	// Nil Match: everything.
	if a, _ := (&MITM{CA: ca}).connectHandler().HandleConnect("any.test:443", nil); a == nil || a.Action != goproxy.ConnectMitm {
		t.Error("nil Match did not decrypt")
	}
	// The built-in CA is never what signs.
	cfg := tlsConfigFor(t, &MITM{CA: ca}, "any.test:443")
	cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "any.test"})
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.CheckSignatureFrom(goproxy.GoproxyCa.Leaf) == nil || cert.Leaf.CheckSignatureFrom(ca.Leaf) != nil {
		t.Error("leaf not signed by our CA alone")
	}
}

func TestMITMUnusableCA(t *testing.T) {
	ca := newTestCA(t)
	expired, _, err := generateCA("expired", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s, err := newLeafSigner(ca, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := s.generate("leaf.test")
	if err != nil {
		t.Fatal(err)
	}
	noLeaf := *ca
	noLeaf.Leaf = nil
	for _, tc := range []struct {
		name    string
		ca      *tls.Certificate
		wantErr string
	}{
		{"nil", nil, "required"},
		{"empty", &tls.Certificate{}, "required"},
		{"expired", expired, "expired"},
		{"leaf", leaf, "not a CA"},
		{"no signer", &tls.Certificate{Certificate: ca.Certificate, Leaf: ca.Leaf, PrivateKey: "key"}, "cannot sign"},
		{"key of another CA", &tls.Certificate{Certificate: ca.Certificate, Leaf: ca.Leaf, PrivateKey: expired.PrivateKey}, "does not match"},
		{"Leaf unset is fine", &noLeaf, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &MITM{CA: tc.ca}
			err := m.check()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("check() = %v, want %q", err, tc.wantErr)
			}
			// The handler still answers, and the CONNECT fails with that error.
			a, _ := m.connectHandler().HandleConnect("x.test:443", nil)
			if a == nil || a.Action != goproxy.ConnectMitm {
				t.Fatalf("action %+v", a)
			}
			if cfg, err := a.TLSConfig("x.test:443", nil); cfg != nil || err == nil {
				t.Errorf("TLSConfig = %v, %v; want an error", cfg, err)
			}
		})
	}
}

// TestMITMThroughGoproxy runs a real goproxy with the MITM handler between a
// real client and two real TLS upstreams: one decrypted, one tunnelled.
func TestMITMThroughGoproxy(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	ca := newTestCA(t)
	// The refusals below make goproxy and the upstreams log handshake
	// errors; they belong in the test's log. Every goroutine that may log is
	// gone before the test ends (goleak checks).
	errorLog := log.New(testWriter{t}, "", 0)
	newUpstream := func(h http.HandlerFunc) *httptest.Server {
		s := httptest.NewUnstartedServer(h)
		s.Config.ErrorLog = errorLog
		s.StartTLS()
		return s
	}
	mitmUp := newUpstream(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "decrypted body for "+r.URL.Path)
	})
	defer mitmUp.Close()
	tunnelUp := newUpstream(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tunnelled body")
	})
	defer tunnelUp.Close()
	mitmHost := mitmUp.Listener.Addr().String()

	m := &MITM{CA: ca, Match: func(host string) bool { return host == mitmHost }}
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = errorLog
	gp.OnRequest().HandleConnect(m.connectHandler())
	// A new config, not a change to gp.Tr.TLSClientConfig: goproxy shares
	// that *tls.Config between every proxy in the process.
	gp.Tr.TLSClientConfig = &tls.Config{RootCAs: caPool(mitmUp.Certificate())}
	defer gp.Tr.CloseIdleConnections()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: gp, ErrorLog: errorLog, ReadHeaderTimeout: time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	proxyURL := &url.URL{Scheme: "http", Host: l.Addr().String()}

	client := func(roots *x509.CertPool) (*http.Client, func()) {
		tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: roots}}
		return &http.Client{Transport: tr, Timeout: time.Minute}, tr.CloseIdleConnections
	}
	get := func(c *http.Client, u string) (*http.Response, string, error) {
		resp, err := c.Get(u)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}

	trustCA, closeCA := client(caPool(ca.Leaf))
	defer closeCA()
	trustUpstream, closeUp := client(caPool(tunnelUp.Certificate()))
	defer closeUp()

	t.Run("matched host is decrypted", func(t *testing.T) {
		resp, body, err := get(trustCA, mitmUp.URL+"/x")
		if err != nil {
			t.Fatal(err)
		}
		if body != "decrypted body for /x" {
			t.Errorf("body %q", body)
		}
		seen := resp.TLS.PeerCertificates[0]
		if err := seen.CheckSignatureFrom(ca.Leaf); err != nil {
			t.Errorf("client saw a leaf not issued by our CA: %v (issuer %q)", err, seen.Issuer)
		}
		if len(seen.IPAddresses) != 1 || !seen.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("leaf IP SANs %v", seen.IPAddresses)
		}
		// A second request reuses the leaf.
		resp2, _, err := get(trustCA, mitmUp.URL+"/y")
		if err != nil {
			t.Fatal(err)
		}
		if !resp2.TLS.PeerCertificates[0].Equal(seen) {
			t.Error("second request saw another leaf")
		}
		// A client that does not trust our CA refuses it: it really was us.
		if _, _, err := get(trustUpstream, mitmUp.URL+"/z"); err == nil {
			t.Error("a client trusting only the upstream's certificate accepted the MITM leaf")
		}
	})

	t.Run("other host passes through", func(t *testing.T) {
		resp, body, err := get(trustUpstream, tunnelUp.URL)
		if err != nil {
			t.Fatal(err)
		}
		if body != "tunnelled body" {
			t.Errorf("body %q", body)
		}
		if !resp.TLS.PeerCertificates[0].Equal(tunnelUp.Certificate()) {
			t.Errorf("client saw %q, not the upstream's own certificate", resp.TLS.PeerCertificates[0].Subject)
		}
		if _, _, err := get(trustCA, tunnelUp.URL); err == nil {
			t.Error("a client trusting only our CA accepted the tunnelled upstream")
		}
	})
}

// testWriter writes log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func BenchmarkLeafCached(b *testing.B) {
	s, err := newLeafSigner(newTestCA(b), 0)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.leaf(nil, "cached.test"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.leaf(nil, "cached.test"); err != nil {
			b.Fatal(err)
		}
	}
	if s.counts.Load() != 1 {
		b.Fatalf("%d generations", s.counts.Load())
	}
}

func BenchmarkLeafGenerate(b *testing.B) {
	s, err := newLeafSigner(newTestCA(b), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.generate("www.example.test"); err != nil {
			b.Fatal(err)
		}
	}
}

// Session ticket keys are shared by every CONNECT's configuration, seal new
// tickets for a day and open them for a day more.
func TestSessionTicketKeysRotate(t *testing.T) {
	s, err := newLeafSigner(newTestCA(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.now = func() time.Time { return now }
	first := s.sessionTicketKeys()
	if len(first) != 1 || first[0] == ([32]byte{}) {
		t.Fatalf("first keys %v, want one random key", first)
	}
	now = now.Add(ticketKeyLife - time.Minute)
	if again := s.sessionTicketKeys(); len(again) != 1 || again[0] != first[0] {
		t.Fatalf("keys changed within a key's life")
	}
	now = now.Add(2 * time.Minute)
	second := s.sessionTicketKeys()
	if len(second) != 2 || second[1] != first[0] || second[0] == first[0] {
		t.Fatalf("after a key's life: want a new key first and the old one second")
	}
	now = now.Add(ticketKeyLife)
	third := s.sessionTicketKeys()
	if len(third) != 2 || third[1] != second[0] || third[0] == second[0] || third[0] == first[0] {
		t.Fatalf("after two lives: want a new key and the previous one only")
	}
}
