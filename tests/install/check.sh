#!/usr/bin/env bash
# Installs libclipengine into a temporary prefix with `make install`, builds tests/install/app.c
# with nothing but pkg-config's flags, and runs it on a committed tiny model.
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
make -s install PREFIX="$prefix" >/dev/null
for f in include/clipengine.h lib/pkgconfig/clipengine.pc; do
  [ -f "$prefix/$f" ] || { echo "install: $f missing" >&2; exit 1; }
done
ls "$prefix"/lib/libclipengine.so.* >/dev/null
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cc tests/install/app.c $(pkg-config --cflags --libs clipengine) -lm -o "$prefix/app"
LD_LIBRARY_PATH=$prefix/lib "$prefix/app" testdata/golden/tiny_openai_quick_f32
echo "install check: ok"
