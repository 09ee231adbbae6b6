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
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

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
