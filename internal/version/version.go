// Package version says which proxywatch a program runs, for the servers that
// announce it: the hub's hello and the Clash API's /version.
package version

import (
	"runtime/debug"
	"sync"
)

// module is the path of the module whose version is reported.
const module = "github.com/proxywatch/proxywatch"

// String returns "proxywatch VERSION": the version of the proxywatch module
// this program was built with, as the build recorded it, or "(devel)" when
// it recorded none (proxywatch is the main module, as in its own tests, or
// the program was built without module information).
func String() string { return read() }

var read = sync.OnceValue(func() string {
	bi, _ := debug.ReadBuildInfo()
	return "proxywatch " + of(bi)
})

// of finds proxywatch's version in bi, which may be nil.
func of(bi *debug.BuildInfo) string {
	v := "(devel)"
	if bi == nil {
		return v
	}
	if bi.Main.Path == module && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module && d.Version != "" {
			v = d.Version
		}
	}
	return v
}
