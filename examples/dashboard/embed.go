package main

import "embed"

// uiFiles is the built dashboard (make ui). The all: prefix keeps the files
// whose names start with _ or ., which Vite emits and a plain pattern drops.
//
//go:embed all:ui/dist
var uiFiles embed.FS
