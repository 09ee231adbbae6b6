// Command dashboard runs a proxywatch proxy and serves the stock dashboard:
// live traffic, connections (closable) and logs in a browser.
//
//	go run ./examples/dashboard
//
// The proxy listens on 127.0.0.1:8080 and the dashboard on
// http://127.0.0.1:8000; the dashboard URL printed at start carries the secret.
// Run with -h for every flag. The program itself is package app.
package main

import "github.com/proxywatch/proxywatch/examples/dashboard/app"

func main() { app.Main(nil) }
