package proxywatch

import "crypto/tls"

// MITM configures decryption of CONNECT tunnels (Options.MITM).
type MITM struct {
	// CA signs the per-host leaf certificates. Required. Use LoadOrCreateCA
	// for a per-installation CA kept on disk; never goproxy's built-in CA,
	// whose private key is public.
	CA *tls.Certificate

	// Match reports whether to decrypt a CONNECT to host ("host:port"). Nil
	// means every host.
	Match func(host string) bool

	// CacheSize bounds the leaf-certificate cache. Zero means 1024.
	CacheSize int
}
