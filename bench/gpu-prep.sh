#!/usr/bin/env bash
# gpu-prep.sh: run on a development machine (Debian 12) before a GPU check: copies what the
# GPU machine lacks and the library needs at build time into build-deps/ (ignored by git;
# carry it with the tree): libjpeg-turbo's TurboJPEG header and shared library (it needs
# only libc), for clip_engine_embed_encoded's CPU decoder and the CUDA backend's fallbacks.
# bench/gpu-check.sh builds against it when it is there.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/build-deps/turbojpeg"
LIB=$(readlink -f "$(ldconfig -p | awk '/libturbojpeg\.so\.0 .*x86-64/ {print $NF; exit}')")
[ -f /usr/include/turbojpeg.h ] && [ -f "$LIB" ] || { echo "gpu-prep: install libturbojpeg0-dev first" >&2; exit 1; }
rm -rf "$DEST" && mkdir -p "$DEST/include" "$DEST/lib"
cp /usr/include/turbojpeg.h "$DEST/include/"
cp "$LIB" "$DEST/lib/libturbojpeg.so.0"
# (no symlink: find_library takes the versioned name, and plain files travel everywhere)
echo "gpu-prep: $DEST ($(du -sh "$DEST" | cut -f1)); carry build-deps with the tree"
