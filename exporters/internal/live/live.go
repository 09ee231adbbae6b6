// Package live counts a Proxy's live connections the way both exporters
// report them, so the Prometheus and OpenTelemetry gauges cannot drift apart.
package live

import "github.com/proxywatch/proxywatch"

// Protocols are the protocols whose series exist from the start, at zero.
var Protocols = []proxywatch.Protocol{
	proxywatch.ProtoHTTP, proxywatch.ProtoTunnel, proxywatch.ProtoHTTPSMITM,
	proxywatch.ProtoHTTPMITM, proxywatch.ProtoWebSocket, proxywatch.ProtoWebSocketMITM,
}

// Count counts conns by protocol, every one of Protocols present (at zero
// when none is live). When labelled is non-nil it also counts them by host:
// a labelled host under its own name (present at zero too), any other under
// other.
func Count(conns []proxywatch.ConnInfo, labelled map[string]bool, other string) (byProto map[proxywatch.Protocol]int, byHost map[string]int) {
	byProto = make(map[proxywatch.Protocol]int, len(Protocols))
	for _, proto := range Protocols {
		byProto[proto] = 0
	}
	if labelled != nil {
		byHost = map[string]int{other: 0}
		for h := range labelled {
			byHost[h] = 0
		}
	}
	for _, ci := range conns {
		byProto[ci.Protocol]++
		if byHost != nil {
			if labelled[ci.Host] {
				byHost[ci.Host]++
			} else {
				byHost[other]++
			}
		}
	}
	return byProto, byHost
}
