package live

import (
	"testing"

	"github.com/proxywatch/proxywatch"
)

func TestCount(t *testing.T) {
	conns := []proxywatch.ConnInfo{
		{Protocol: proxywatch.ProtoHTTP, Host: "a:80"},
		{Protocol: proxywatch.ProtoHTTP, Host: "b:80"},
		{Protocol: proxywatch.ProtoTunnel, Host: "a:443"},
	}
	byProto, byHost := Count(conns, map[string]bool{"a:80": true, "z:1": true}, "other")
	if byProto[proxywatch.ProtoHTTP] != 2 || byProto[proxywatch.ProtoTunnel] != 1 || len(byProto) != len(Protocols) {
		t.Errorf("by protocol: %v", byProto)
	}
	if byHost["a:80"] != 1 || byHost["z:1"] != 0 || byHost["other"] != 2 || len(byHost) != 3 {
		t.Errorf("by host: %v", byHost)
	}
	if _, byHost := Count(conns, nil, "other"); byHost != nil {
		t.Errorf("by host without labels: %v", byHost)
	}
}
