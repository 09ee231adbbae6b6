module github.com/proxywatch/proxywatch

go 1.26

require (
	github.com/elazarl/goproxy v1.9.4
	github.com/gorilla/websocket v1.5.3
	go.uber.org/goleak v1.3.0
	golang.org/x/net v0.50.0
)

require golang.org/x/text v0.34.0 // indirect
