//go:build !clipengine_pkgconfig

// link_intree.go: the default link mode: the header from engine/include and the library
// from the in-tree build directory build/lib (what `make build` makes), with an rpath to it,
// so `go build ./...` and `go test ./...` work in a fresh clone after `make build`. Build
// with -tags clipengine_pkgconfig to link through pkg-config instead (link_pkgconfig.go):
// another build directory, or an installed libclipengine.

package engine

/*
#cgo CFLAGS: -I${SRCDIR}/../../engine/include
#cgo LDFLAGS: -L${SRCDIR}/../../build/lib -lclipengine -Wl,-rpath,${SRCDIR}/../../build/lib
*/
import "C"
