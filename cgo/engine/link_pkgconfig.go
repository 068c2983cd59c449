//go:build clipengine_pkgconfig

// link_pkgconfig.go: with -tags clipengine_pkgconfig the header and library come from
// `pkg-config clipengine`, as for any other program using libclipengine:
//
//   - an installed one: PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig (clipengine.pc, from
//     `make install PREFIX=...`); the binary then finds the library like any other shared
//     library (ldconfig, LD_LIBRARY_PATH), as clipengine.pc sets no rpath;
//   - a build directory: PKG_CONFIG_PATH=$BUILD, where CMake writes
//     clipengine-uninstalled.pc (pkg-config prefers NAME-uninstalled.pc), which points at
//     $BUILD/lib with an rpath. The Makefile builds and tests this way.
//
// The go command's build cache does not key on pkg-config's output: after pointing
// PKG_CONFIG_PATH elsewhere, change CGO_CPPFLAGS too (the Makefile adds
// -DCLIPENGINE_BUILD_DIR=$BUILD) or run `go clean -cache`, else a cached package keeps the
// old library's flags.

package engine

/*
#cgo pkg-config: clipengine
*/
import "C"
