#!/usr/bin/env bash
# Installs libclipengine into a temporary prefix with `make install`, builds tests/install/app.c
# with nothing but pkg-config's flags and runs it on a committed tiny model; then builds the
# Go program tests/install/goapp with the binding's pkg-config link mode
# (-tags clipengine_pkgconfig) against the same prefix, checks that it links the installed
# library (not the build tree's), and runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
make -s install PREFIX="$prefix" >/dev/null
for f in include/clipengine.h lib/pkgconfig/clipengine.pc; do
  [ -f "$prefix/$f" ] || { echo "install: $f missing" >&2; exit 1; }
done
ls "$prefix"/lib/libclipengine.so.* >/dev/null
# The CUDA extras header comes with a library that exports them, and only then.
if nm -D --defined-only "$prefix"/lib/libclipengine.so | grep -q ' clip_cuda_debug_graphs$'; then
  [ -f "$prefix/include/clipengine_cuda.h" ] || { echo "install: include/clipengine_cuda.h missing" >&2; exit 1; }
else
  [ ! -e "$prefix/include/clipengine_cuda.h" ] || { echo "install: clipengine_cuda.h without CUDA" >&2; exit 1; }
fi
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cc tests/install/app.c $(pkg-config --cflags --libs clipengine) -lm -o "$prefix/app"
LD_LIBRARY_PATH=$prefix/lib "$prefix/app" testdata/golden/tiny_openai_quick_f32

# Go, through pkg-config. The go command's cache does not key on pkg-config's answer, so
# the prefix goes into CGO_CPPFLAGS (a define nothing reads) to rebuild the binding here.
CGO_CPPFLAGS="-DCLIPENGINE_PREFIX=$prefix" \
  go build -tags clipengine_pkgconfig -o "$prefix/goapp" ./tests/install/goapp
readelf -d "$prefix/goapp" | grep -q 'NEEDED.*\[libclipengine\.so\.0\]' \
  || { echo "goapp: does not link libclipengine.so.0" >&2; exit 1; }
if readelf -d "$prefix/goapp" | grep -E 'RPATH|RUNPATH' | grep -qF "$root"; then
  echo "goapp: has a runpath into the source tree, not the pkg-config link:" >&2
  readelf -d "$prefix/goapp" | grep -E 'RPATH|RUNPATH' >&2
  exit 1
fi
linked=$(LD_LIBRARY_PATH=$prefix/lib ldd "$prefix/goapp" | awk '/libclipengine/ {print $3}')
[ "$(readlink -f "$linked")" = "$(readlink -f "$prefix"/lib/libclipengine.so.0)" ] \
  || { echo "goapp: links $linked, want $prefix/lib/libclipengine.so.0" >&2; exit 1; }
LD_LIBRARY_PATH=$prefix/lib "$prefix/goapp" testdata/golden/tiny_openai_quick_f32
echo "install check: ok"
