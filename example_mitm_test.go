package proxywatch_test

import (
	"bytes"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/proxywatch/proxywatch"
)

// A per-installation CA: created on the first run, loaded on every later one.
// Give its certificate (CACertPEM) to the clients that should accept
// decrypted traffic, and pass it to the proxy in Options.MITM.
func ExampleLoadOrCreateCA() {
	base, err := os.MkdirTemp("", "proxywatch-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(base)
	dir := filepath.Join(base, "ca") // in a real program: proxywatch.DefaultCADir()

	ca, err := proxywatch.LoadOrCreateCA(dir) // creates ca.pem and ca-key.pem
	if err != nil {
		log.Fatal(err)
	}
	again, err := proxywatch.LoadOrCreateCA(dir) // loads them
	if err != nil {
		log.Fatal(err)
	}

	fmt.Println("is a CA:", ca.Leaf.IsCA)
	fmt.Println("named per installation:", strings.HasPrefix(ca.Leaf.Subject.CommonName, "proxywatch CA "))
	fmt.Println("same CA on reload:", bytes.Equal(ca.Certificate[0], again.Certificate[0]))
	fmt.Printf("to install: %.27s...\n", proxywatch.CACertPEM(ca))

	opts := &proxywatch.Options{MITM: &proxywatch.MITM{
		CA:    ca,
		Match: func(host string) bool { return strings.HasSuffix(host, ".example.com:443") },
	}}
	_ = opts // proxywatch.New(opts)
	// Output:
	// is a CA: true
	// named per installation: true
	// same CA on reload: true
	// to install: -----BEGIN CERTIFICATE-----...
}
