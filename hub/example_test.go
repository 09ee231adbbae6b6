package hub_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/proxywatch/proxywatch"
	"github.com/proxywatch/proxywatch/hub"
)

// Example mounts a Hub and talks to it the way a dashboard does: read hello,
// subscribe, and close connections.
func Example() {
	p := proxywatch.New(nil) // serve it with p.ListenAndServe("127.0.0.1:8080")
	defer p.Close()
	h := hub.New(p, &hub.Options{Token: "s3cret"}) // leave Token empty for a random one
	defer h.Close()
	mux := http.NewServeMux()
	mux.Handle("/start", h)
	srv := httptest.NewServer(mux) // a real program listens on loopback
	defer srv.Close()

	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/start?token=" + h.Token()
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	var m hub.Message
	var hello hub.Hello
	conn.ReadJSON(&m)
	json.Unmarshal(m.Data, &hello)
	fmt.Printf("%s: protocol %d, traffic every %d ms, connections every %d ms\n",
		m.Type, hello.Protocol, hello.Intervals.Traffic, hello.Intervals.Connections)

	conn.WriteJSON(hub.Request{Action: hub.ActionSubscribe, Topics: []string{"traffic", "logs", "colors"}, LogLevel: "warning"})
	var sub hub.Subscribed
	conn.ReadJSON(&m)
	json.Unmarshal(m.Data, &sub)
	fmt.Printf("%s: %v at %s\n", m.Type, sub.Topics, sub.LogLevel)

	conn.WriteMessage(websocket.TextMessage, []byte(`{"action":"closeConnection","id":42,"ref":"x"}`))
	conn.ReadJSON(&m)
	fmt.Printf("%s: %s ref %s\n", m.Type, m.Data, m.Ref)
	// Output:
	// hello: protocol 1, traffic every 1000 ms, connections every 2000 ms
	// subscribed: [traffic logs] at WARN
	// result: {"action":"closeConnection","closed":0,"ids":[]} ref "x"
}

// ExampleConnFromInfo shows a connection entry as the protocol encodes it.
func ExampleConnFromInfo() {
	start := time.Date(2026, 11, 27, 11, 30, 45, 500000000, time.FixedZone("CET", 3600))
	c := hub.ConnFromInfo(proxywatch.ConnInfo{
		ID: 7, Protocol: proxywatch.ProtoTunnel, Method: "CONNECT", Host: "example.com:443", URL: "example.com:443",
		Client: "127.0.0.1:50000", Start: start, End: start.Add(2 * time.Second), Up: 517, Down: 4410,
		DownRate: 2204.6, EndReason: proxywatch.EndCompleted,
	})
	b, _ := json.Marshal(c)
	fmt.Println(string(b))
	// Output:
	// {"id":7,"method":"CONNECT","host":"example.com:443","url":"example.com:443","remote":"127.0.0.1:50000","protocol":"HTTPS-Tunnel","up":517,"down":4410,"start":"2026-11-27T10:30:45.5Z","upRate":0,"downRate":2205,"status":0,"parent":0,"end":"2026-11-27T10:30:47.5Z","endReason":"completed"}
}
