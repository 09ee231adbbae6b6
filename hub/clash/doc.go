// Package clash serves the Clash/mihomo external-controller API for a
// proxywatch.Proxy, so that dashboards written for Clash (yacd, metacubexd,
// zashboard...) show the proxy's traffic, connections and logs unchanged and
// can close its connections. CLASH.md lists every endpoint, the values a
// forward proxy fills in for Clash's fields, and how the dashboards were
// checked against it.
//
// An [API] is an http.Handler of its own, served on its own listener:
// dashboards expect the API at the root of an address. It requires a secret
// on every request and refuses cross-origin browsers unless their origin is
// listed in [Options].
package clash
