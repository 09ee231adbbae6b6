package proxywatch

import (
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
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

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
