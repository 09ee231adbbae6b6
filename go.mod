module github.com/proxywatch/proxywatch

go 1.26.8

require (
	github.com/elazarl/goproxy v1.9.3 // indirect
	github.com/gorilla/websocket v1.5.3 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	golang.org/x/net v0.50.0 // indirect
	golang.org/x/text v0.34.0 // indirect
)
