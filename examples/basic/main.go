// Command basic is the smallest useful embedding of proxywatch: a forward
// proxy on 127.0.0.1:8080 that prints its traffic every five seconds.
//
//	go run ./examples/basic
//	curl -x http://127.0.0.1:8080 http://example.com/
package main

import (
	"flag"
	"log"
	"time"

	"github.com/proxywatch/proxywatch"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "proxy listen address")
	flag.Parse()

	p := proxywatch.New(&proxywatch.Options{SampleInterval: 5 * time.Second})
	p.Observe(proxywatch.TrafficObserverFunc(func(s proxywatch.TrafficSample) {
		log.Printf("up %d B (%.0f B/s), down %d B (%.0f B/s), %d live connections",
			s.UpTotal, s.UpRate(), s.DownTotal, s.DownRate(), s.Live)
	}))
	log.Printf("proxy listening on %s", *addr)
	log.Fatal(p.ListenAndServe(*addr))
}
