package proxywatch

import (
	"container/list"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
)

// MITM configures decryption of CONNECT tunnels (Options.MITM).
//
// For every CONNECT whose host Match accepts, the proxy answers the client's
// TLS handshake itself with a leaf certificate for the name the client asked
// for (its SNI, or the CONNECT host when there is none), signed by CA, and
// forwards the decrypted requests upstream over a new, verified TLS
// connection. Clients must trust CA; CACertPEM gives what to install.
//
// CA must be your own, made per installation: LoadOrCreateCA makes and keeps
// one. proxywatch never uses goproxy's built-in CA (goproxy.GoproxyCa, behind
// goproxy.MitmConnect and goproxy.AlwaysMitm): its private key ships inside
// the goproxy module, so anyone can mint certificates a device that trusts it
// would accept, for any site. Nor does it reassign that process-wide global.
//
// Leaves use ECDSA P-256 keys, are valid from an hour ago for a year (never
// past CA's expiry, and within the 398 days browsers accept), and are kept in
// a bounded LRU cache: a host costs one key generation and one signature per
// year, however many clients connect to it at once. A leaf within a day of
// expiry is replaced. A client that connects again resumes its TLS session
// (session tickets sealed with keys the proxy makes at random and rotates
// daily), an abbreviated handshake.
//
// The proxy reads a MITM once, in New; changing it afterwards has no effect.
type MITM struct {
	// CA signs the per-host leaf certificates. Required: its Certificate[0]
	// must be a CA certificate and its PrivateKey a crypto.Signer. Use
	// LoadOrCreateCA for a per-installation CA kept on disk; never goproxy's
	// built-in CA, whose private key is public.
	CA *tls.Certificate

	// Match reports whether to decrypt a CONNECT to host ("host:port"). Nil
	// means every host. CONNECTs it declines are left to later handlers, and
	// by default pass through as plain tunnels. It is called concurrently.
	Match func(host string) bool

	// CacheSize bounds the leaf-certificate cache (entries, least recently
	// used evicted first). Zero or negative means 1024.
	CacheSize int
}

// File names inside the CA directory, and the permissions they get.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"

	caDirMode  fs.FileMode = 0o700
	caKeyMode  fs.FileMode = 0o600
	caCertMode fs.FileMode = 0o644

	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// leafBackdate absorbs clock skew between the proxy and its clients.
	leafBackdate = time.Hour
	// leafRenewBefore is how close to its expiry a cached leaf is replaced,
	// so that no client is handed a leaf that expires during its session.
	leafRenewBefore = 24 * time.Hour

	defaultLeafCacheSize = 1024
)

// LoadOrCreateCA loads the CA certificate and key kept in dir (ca.pem and
// ca-key.pem), or, when neither exists, generates a new per-installation CA
// (ECDSA P-256, CN "proxywatch CA <hostname> <date>", 10 years, CA:true,
// KeyUsageCertSign) and writes them: dir 0700, ca-key.pem 0600, ca.pem 0644.
//
// It refuses, with an error saying what to fix, a key file that group or
// others may access (on systems with POSIX permissions), a half-present pair
// (it never overwrites an existing file), a certificate that is not a CA, a
// key that does not match the certificate, unparsable PEM, or an expired CA.
// It does not guard against two processes creating the same CA at the same
// instant: create it once, before serving. The returned certificate has Leaf
// set.
func LoadOrCreateCA(dir string) (*tls.Certificate, error) {
	certPath := filepath.Join(dir, caCertFile)
	keyPath := filepath.Join(dir, caKeyFile)
	certExists, err := fileExists(certPath)
	if err != nil {
		return nil, err
	}
	keyExists, err := fileExists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certExists && keyExists:
		return loadCA(certPath, keyPath, time.Now())
	case certExists:
		return nil, fmt.Errorf("proxywatch: CA certificate %s exists but its key %s does not; restore the key or remove both to generate a new CA", certPath, keyPath)
	case keyExists:
		return nil, fmt.Errorf("proxywatch: CA key %s exists but its certificate %s does not; restore the certificate or remove both to generate a new CA", keyPath, certPath)
	}

	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	now := time.Now()
	cn := fmt.Sprintf("proxywatch CA %s %s", host, now.UTC().Format("2006-01-02"))
	ca, keyPEM, err := generateCA(cn, now.Add(-leafBackdate), now.Add(caValidity))
	if err != nil {
		return nil, err
	}
	if err := writeCAFiles(dir, CACertPEM(ca), keyPEM); err != nil {
		return nil, err
	}
	return ca, nil
}

// CACertPEM returns the PEM encoding of ca's certificate (what users install
// in their trust store). It returns nil when ca holds no certificate.
func CACertPEM(ca *tls.Certificate) []byte {
	if ca == nil || len(ca.Certificate) == 0 {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate[0]})
}

// DefaultCADir returns the per-user default directory for the CA:
// os.UserConfigDir()/proxywatch/ca (for example ~/.config/proxywatch/ca on
// Linux). It does not create it.
func DefaultCADir() (string, error) {
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("proxywatch: no default CA directory: %w", err)
	}
	return filepath.Join(base, "proxywatch", "ca"), nil
}

func fileExists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("proxywatch: %w", err)
	}
}

// generateCA makes a self-signed ECDSA P-256 CA valid over [notBefore,
// notAfter] and returns it (Leaf set) with its key in PKCS #8 PEM. It may only
// sign leaves (MaxPathLen 0).
func generateCA(cn string, notBefore, notAfter time.Time) (*tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("proxywatch: generating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"proxywatch"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("proxywatch: signing CA certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("proxywatch: parsing new CA certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("proxywatch: encoding CA key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, keyPEM, nil
}

// writeCAFiles creates dir (0700) if needed and writes the pair into it,
// refusing to overwrite an existing file. The key is written first; if
// anything fails, the files it created are removed again.
func writeCAFiles(dir string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, caDirMode); err != nil {
		return fmt.Errorf("proxywatch: creating CA directory: %w", err)
	}
	keyPath := filepath.Join(dir, caKeyFile)
	if err := writeNewFile(keyPath, keyPEM, caKeyMode); err != nil {
		return err
	}
	if err := writeNewFile(filepath.Join(dir, caCertFile), certPEM, caCertMode); err != nil {
		_ = os.Remove(keyPath)
		return err
	}
	return nil
}

// writeNewFile writes data to a file that must not exist yet, with exactly
// mode (whatever the umask), synced to disk.
func writeNewFile(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("proxywatch: writing CA: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("proxywatch: writing CA: %w", cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if runtime.GOOS != "windows" {
		if err := f.Chmod(mode); err != nil {
			return fmt.Errorf("proxywatch: writing CA: %w", err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("proxywatch: writing CA: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("proxywatch: writing CA: %w", err)
	}
	return nil
}

// loadCA reads and checks a CA pair; see LoadOrCreateCA for what it refuses.
func loadCA(certPath, keyPath string, now time.Time) (*tls.Certificate, error) {
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(keyPath)
		if err != nil {
			return nil, fmt.Errorf("proxywatch: %w", err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("proxywatch: CA key %s has mode %#o, so group or others may read or change it; run chmod 600 on it (and consider the CA compromised if others could read it)", keyPath, perm)
		}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("proxywatch: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("proxywatch: %w", err)
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("proxywatch: %s holds no PEM CERTIFICATE block", certPath)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || !strings.HasSuffix(b.Type, "PRIVATE KEY") {
		return nil, fmt.Errorf("proxywatch: %s holds no PEM PRIVATE KEY block", keyPath)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("proxywatch: CA pair %s / %s: %w", certPath, keyPath, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("proxywatch: %s: %w", certPath, err)
		}
	}
	if err := checkCA(pair.Leaf, now); err != nil {
		return nil, fmt.Errorf("proxywatch: %s: %w", certPath, err)
	}
	return &pair, nil
}

// checkCA reports why cert cannot sign leaves at now, if it cannot.
func checkCA(cert *x509.Certificate, now time.Time) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("certificate %q is not a CA (basic constraints CA:false)", cert.Subject.CommonName)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("CA %q may not sign certificates (no keyCertSign key usage)", cert.Subject.CommonName)
	}
	if !now.Before(cert.NotAfter) {
		return fmt.Errorf("CA %q expired on %s; remove it to generate a new one (and have clients trust the new one)", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("proxywatch: certificate serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // positive, never zero
}

// check reports why m cannot be used, if it cannot.
func (m *MITM) check() error {
	_, err := newLeafSigner(m.CA, m.CacheSize)
	return err
}

// connectHandler returns a goproxy.HttpsHandler that answers a CONNECT whose
// host (host:port) m.Match accepts (all when Match is nil) with a ConnectMitm
// action whose certificates come from m.CA, and (nil, "") for the others so
// later handlers decide. Each call makes its own leaf cache, so call it once
// per proxy. It never uses goproxy.GoproxyCa, MitmConnect or AlwaysMitm.
//
// If m cannot sign (no CA, not a CA, expired), matched CONNECTs fail: the
// client gets an error instead of the tunnel and goproxy logs a warning. New
// should call m.check first to report that early.
func (m *MITM) connectHandler() goproxy.HttpsHandler {
	match := m.Match
	s, err := newLeafSigner(m.CA, m.CacheSize)
	tlsConfig := func(host string, _ *goproxy.ProxyCtx) (*tls.Config, error) {
		if err != nil {
			return nil, err
		}
		return s.tlsConfig(host), nil
	}
	return goproxy.FuncHttpsHandler(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		if match != nil && !match(host) {
			return nil, ""
		}
		return &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: tlsConfig}, host
	})
}

// leafSigner makes and caches leaf certificates signed by one CA. It is safe
// for concurrent use.
type leafSigner struct {
	ca     *x509.Certificate
	caDER  []byte
	caKey  crypto.Signer
	max    int
	now    func() time.Time // time.Now; tests move it
	counts atomic.Uint64    // leaves generated (tests and benchmarks)

	mu       sync.Mutex
	lru      *list.List               // of *leafEntry, most recently used first
	byName   map[string]*list.Element // name -> element of lru
	inflight map[string]*leafCall     // name -> generation in progress

	ticketMu   sync.Mutex
	ticketKeys [][32]byte // session ticket keys, the current one first
	ticketAt   time.Time  // when ticketKeys[0] was made
}

// ticketKeyLife is how long a session ticket key seals new tickets; tickets
// it sealed are accepted for one life more.
const ticketKeyLife = 24 * time.Hour

type leafEntry struct {
	name string
	cert *tls.Certificate
}

// leafCall is one generation in progress; done is closed when cert and err
// are set. Requests for the same name wait on it instead of generating again.
type leafCall struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

func newLeafSigner(ca *tls.Certificate, size int) (*leafSigner, error) {
	if ca == nil || len(ca.Certificate) == 0 {
		return nil, errors.New("proxywatch: MITM.CA is required (see LoadOrCreateCA)")
	}
	caCert := ca.Leaf
	if caCert == nil {
		var err error
		if caCert, err = x509.ParseCertificate(ca.Certificate[0]); err != nil {
			return nil, fmt.Errorf("proxywatch: MITM.CA: %w", err)
		}
	}
	if err := checkCA(caCert, time.Now()); err != nil {
		return nil, fmt.Errorf("proxywatch: MITM.CA: %w", err)
	}
	key, ok := ca.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("proxywatch: MITM.CA: private key %T cannot sign", ca.PrivateKey)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(caCert.PublicKey) {
		return nil, errors.New("proxywatch: MITM.CA: private key does not match the certificate")
	}
	if size <= 0 {
		size = defaultLeafCacheSize
	}
	return &leafSigner{
		ca:       caCert,
		caDER:    ca.Certificate[0],
		caKey:    key,
		max:      size,
		now:      time.Now,
		lru:      list.New(),
		byName:   make(map[string]*list.Element),
		inflight: make(map[string]*leafCall),
	}, nil
}

// tlsConfig returns the server configuration for a MITM'd CONNECT to host
// (host:port): a leaf for the client's SNI, or for host without its port when
// the client sent none (as for IP addresses).
func (s *leafSigner) tlsConfig(host string) *tls.Config {
	fallback := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		fallback = h
	}
	fallback = strings.Trim(fallback, "[]")
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" {
				name = fallback
			}
			var cancel <-chan struct{}
			if ctx := hello.Context(); ctx != nil {
				cancel = ctx.Done()
			}
			return s.leaf(cancel, name)
		},
	}
	cfg.SetSessionTicketKeys(s.sessionTicketKeys())
	return cfg
}

// sessionTicketKeys returns the keys every MITM connection's session tickets
// are sealed and opened with, so that a client resumes its TLS session on
// its next connection (an abbreviated handshake, without the signature of a
// full one). Left to itself, each tls.Config (one per CONNECT) would make
// keys of its own, and no ticket would be good on another connection. A key
// seals tickets for ticketKeyLife and opens them for as long again, as Go's
// own keys rotate.
func (s *leafSigner) sessionTicketKeys() [][32]byte {
	s.ticketMu.Lock()
	defer s.ticketMu.Unlock()
	now := s.now()
	if len(s.ticketKeys) == 0 || now.Sub(s.ticketAt) >= ticketKeyLife {
		var k [32]byte
		_, _ = rand.Read(k[:]) // crypto/rand never fails
		keys := [][32]byte{k}
		if len(s.ticketKeys) > 0 {
			keys = append(keys, s.ticketKeys[0])
		}
		s.ticketKeys, s.ticketAt = keys, now
	}
	return s.ticketKeys
}

// leaf returns a leaf certificate for name, from the cache when it holds one
// not close to expiry, else generated once however many callers ask at the
// same time. A caller stops waiting for another's generation when cancel is
// closed.
func (s *leafSigner) leaf(cancel <-chan struct{}, name string) (*tls.Certificate, error) {
	name = strings.ToLower(name)
	s.mu.Lock()
	if el, ok := s.byName[name]; ok {
		e := el.Value.(*leafEntry)
		if s.now().Add(leafRenewBefore).Before(e.cert.Leaf.NotAfter) {
			s.lru.MoveToFront(el)
			s.mu.Unlock()
			return e.cert, nil
		}
	}
	if c, ok := s.inflight[name]; ok {
		s.mu.Unlock()
		select {
		case <-c.done:
			return c.cert, c.err
		case <-cancel:
			return nil, fmt.Errorf("proxywatch: waiting for the certificate of %q: handshake canceled", name)
		}
	}
	// Only names that passed this check are ever cached or in flight.
	if err := checkLeafName(name); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	c := &leafCall{done: make(chan struct{})}
	s.inflight[name] = c
	s.mu.Unlock()

	c.cert, c.err = s.generate(name)

	s.mu.Lock()
	delete(s.inflight, name)
	if c.err == nil {
		s.store(name, c.cert)
	}
	s.mu.Unlock()
	close(c.done)
	return c.cert, c.err
}

// store puts cert in the cache as the most recent entry for name and evicts
// the least recently used entries beyond the bound. s.mu must be held.
func (s *leafSigner) store(name string, cert *tls.Certificate) {
	if el, ok := s.byName[name]; ok {
		el.Value.(*leafEntry).cert = cert
		s.lru.MoveToFront(el)
		return
	}
	s.byName[name] = s.lru.PushFront(&leafEntry{name: name, cert: cert})
	for s.lru.Len() > s.max {
		oldest := s.lru.Back()
		s.lru.Remove(oldest)
		delete(s.byName, oldest.Value.(*leafEntry).name)
	}
}

// checkLeafName refuses names no certificate should be made for. The SNI is
// chosen by the client, so it is bounded here.
func checkLeafName(name string) error {
	if name == "" {
		return errors.New("proxywatch: no host name to make a certificate for")
	}
	if len(name) > 253 {
		return fmt.Errorf("proxywatch: host name of %d bytes is too long for a certificate", len(name))
	}
	if net.ParseIP(name) != nil {
		return nil
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		default:
			return fmt.Errorf("proxywatch: host name %q has a character not allowed in a certificate", name)
		}
	}
	return nil
}

// generate makes a new leaf for name (a DNS name or an IP address): a fresh
// P-256 key, a random serial, valid from an hour ago to a year from now or
// the CA's expiry, whichever is first. The chain sent includes the CA.
func (s *leafSigner) generate(name string) (*tls.Certificate, error) {
	s.counts.Add(1)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("proxywatch: generating leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := s.now()
	if !now.Before(s.ca.NotAfter) {
		return nil, fmt.Errorf("proxywatch: MITM CA %q expired on %s", s.ca.Subject.CommonName, s.ca.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(leafValidity)
	if s.ca.NotAfter.Before(notAfter) {
		notAfter = s.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"proxywatch MITM"}},
		NotBefore:             now.Add(-leafBackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if len(name) <= 64 { // the longest CommonName X.509 allows; SANs are what clients check
		tmpl.Subject.CommonName = name
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		return nil, fmt.Errorf("proxywatch: signing leaf for %q: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("proxywatch: parsing leaf for %q: %w", name, err)
	}
	return &tls.Certificate{
		Certificate: [][]byte{der, s.caDER},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}
