package proxywatch_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A client that connects again through a decrypting proxy resumes its TLS
// session (every CONNECT's configuration shares the proxy's ticket keys), so
// its next handshake needs no new signature.
func TestMITMSessionResumes(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	_, pu, roots := mitmSetup(t, up)
	tr := &http.Transport{
		Proxy:             http.ProxyURL(pu),
		TLSClientConfig:   &tls.Config{RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(8)},
		DisableKeepAlives: true, // a new CONNECT and handshake for each request
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for i, want := range []bool{false, true, true} {
		resp, err := c.Get(up.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.TLS == nil || resp.TLS.DidResume != want {
			t.Errorf("connection %d: resumed %v, want %v", i, resp.TLS != nil && resp.TLS.DidResume, want)
		}
	}
}
