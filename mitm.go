package proxywatch

import (
	"crypto/tls"

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
