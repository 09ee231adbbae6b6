package proxywatch_test

import (
	"bufio"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/proxywatch/proxywatch"
)

// mitmSetup starts a Proxy that decrypts every CONNECT with a fresh CA, and
// returns it with the pool a client must trust.
func mitmSetup(t testing.TB, upstream *httptest.Server) (*proxywatch.Proxy, *url.URL, *x509.CertPool) {
	t.Helper()
	ca, err := proxywatch.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var extra []*x509.Certificate
	if upstream != nil && upstream.TLS != nil {
		extra = append(extra, upstream.Certificate())
	}
	p, pu := setup(t, &proxywatch.Options{MITM: &proxywatch.MITM{CA: ca}, UpstreamCAs: extra})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)
	return p, pu, pool
}

func TestMITMCountsEachDecryptedRequest(t *testing.T) {
	body := payload(30_000)
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	defer up.Close()
	p, pu, pool := mitmSetup(t, up)
	c := client(t, pu, pool)
	for i := 0; i < 3; i++ { // three requests over one TLS connection
		resp, err := c.Post(up.URL+fmt.Sprintf("/r%d", i), "text/plain", strings.NewReader(string(payload(1000*(i+1)))))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(got) != len(body) {
			t.Fatalf("read %d, %v", len(got), err)
		}
		if resp.TLS == nil || resp.TLS.PeerCertificates[0].Issuer.CommonName == up.Certificate().Issuer.CommonName {
			t.Fatal("the client did not see a MITM certificate")
		}
	}
	var parent proxywatch.ConnID
	for i := 0; i < 3; i++ {
		u := up.URL + fmt.Sprintf("/r%d", i)
		info := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return ci.URL == u })
		if info.Protocol != proxywatch.ProtoHTTPSMITM || info.Up != uint64(1000*(i+1)) || info.Down != uint64(len(body)) || info.Status != 200 {
			t.Errorf("request %d: %+v", i, info)
		}
		if info.Parent == 0 || (parent != 0 && info.Parent != parent) {
			t.Errorf("request %d: parent %d, want one shared non-zero tunnel id (%d)", i, info.Parent, parent)
		}
		parent = info.Parent
	}
	c.CloseIdleConnections()
	waitIdle(t, p)
	checkTotals(t, p)
}

func TestHTTPOverConnectMITM(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "11")
		io.WriteString(w, "hello world")
	}))
	defer up.Close()
	p, pu, _ := mitmSetup(t, nil)
	c := rawConnect(t, pu, up.Listener.Addr().String())
	defer c.Close()
	fmt.Fprintf(c, "POST /plain HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nabcde", up.Listener.Addr())
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "hello world" {
		t.Fatalf("body %q", b)
	}
	info := findClosed(t, p, func(ci proxywatch.ConnInfo) bool { return strings.HasSuffix(ci.URL, "/plain") })
	if info.Protocol != proxywatch.ProtoHTTPMITM || info.Up != 5 || info.Down != 11 {
		t.Errorf("info = %+v", info)
	}
}
