// Package ui holds the web UI's templates and static files, embedded so
// that `go build` alone builds the whole product.
package ui

import "embed"

// Templates are html/template files; layout.html wraps every page.
//
//go:embed templates
var Templates embed.FS

// Static holds CSS and small scripts served under /static/.
//
//go:embed static
var Static embed.FS
