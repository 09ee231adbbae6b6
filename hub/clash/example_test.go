package clash_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub/clash"
)

// ExampleNew serves the Clash API of a Proxy and talks to it the way
// a Clash dashboard does: HTTP with "Authorization: Bearer", WebSockets with
// ?token=.
func ExampleNew() {
	p := proxywatch.New(nil) // serve it with p.ListenAndServe("127.0.0.1:8080")
	defer p.Close()
	api := clash.New(p, &clash.Options{
		Token:          "s3cret",                          // leave it empty for a random one: api.Token()
		AllowedOrigins: []string{"http://127.0.0.1:5173"}, // where your dashboard is served from
		ProxyAddr:      "127.0.0.1:8080",                  // reported by /configs
	})
	defer api.Close()
	srv := httptest.NewServer(api) // a real program gives it its own listener, e.g. 127.0.0.1:9090
	defer srv.Close()

	get := func(path string) []byte {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+api.Token())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return []byte(err.Error())
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return body
	}
	fmt.Printf("GET /: %s", get("/"))
	fmt.Printf("GET /rules: %s", get("/rules"))
	var snap struct {
		DownloadTotal, UploadTotal uint64
		Connections                []any
	}
	json.Unmarshal(get("/connections"), &snap)
	fmt.Printf("GET /connections: %d live, %d bytes down\n", len(snap.Connections), snap.DownloadTotal)

	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/logs?level=warning&token="+api.Token(), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ws.Close()
	fmt.Println("logs: subscribed at warning")
	// Output:
	// GET /: {"hello":"clash"}
	// GET /rules: {"rules":[{"index":0,"type":"Match","payload":"","proxy":"DIRECT","size":-1}]}
	// GET /connections: 0 live, 0 bytes down
	// logs: subscribed at warning
}
