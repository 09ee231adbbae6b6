module github.com/proxywatch/proxywatch/internal/bench/peers

go 1.26

require (
	github.com/lqqyt2423/go-mitmproxy v1.8.5
	github.com/sirupsen/logrus v1.8.1
)

require (
	github.com/andybalholm/brotli v1.0.4 // indirect
	github.com/golang/groupcache v0.0.0-20210331224755-41bb18bfe9da // indirect
	github.com/klauspost/compress v1.17.8 // indirect
	github.com/kr/pretty v0.3.1 // indirect
	github.com/satori/go.uuid v1.2.0 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/net v0.22.0 // indirect
	golang.org/x/sys v0.18.0 // indirect
	golang.org/x/text v0.14.0 // indirect
)
