package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "(devel)"},
		{"main module, devel", &debug.BuildInfo{Main: debug.Module{Path: module, Version: "(devel)"}}, "(devel)"},
		{"main module, tagged", &debug.BuildInfo{Main: debug.Module{Path: module, Version: "v1.2.3"}}, "v1.2.3"},
		{"a dependency", &debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "v9.0.0"},
			Deps: []*debug.Module{{Path: "example.com/other", Version: "v0.1.0"}, {Path: module, Version: "v0.4.0"}}}, "v0.4.0"},
		{"not there", &debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "v9.0.0"}}, "(devel)"},
	} {
		if got := of(tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if s := String(); !strings.HasPrefix(s, "proxywatch ") || s != String() {
		t.Errorf("String() = %q", s)
	}
}
