// Package ui holds the built dashboard (Vue 3, Pinia, Chart.js) for embedding
// in Go programs. The sources are beside this file; `make ui` rebuilds dist/.
package ui

import (
	"embed"
	"io/fs"
)

// dist is the Vite build. The all: prefix keeps files whose names start with
// _ or ., which Vite may emit and a plain pattern would drop.
//
//go:embed all:dist
var dist embed.FS

// FS returns the built dashboard, index.html at its root.
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}
