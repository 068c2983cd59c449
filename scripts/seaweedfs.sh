#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (Apache-2.0), the real S3 server the object-storage tests run
# against, once into a cache folder, and prints the binary's path.
#
#   bash scripts/seaweedfs.sh            # build if missing, print the path
#
# The module comes from the Go module proxy. Its go.mod has replace directives, so
# `go install module@version` refuses it: the module folder is copied out of the module cache
# and built there (about 6 minutes on 2 cores, a ~230 MB binary). CLIPD_CACHE_DIR moves the
# cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/clipd).
set -euo pipefail

VERSION=v0.0.0-20261109003541-7506e5f91cd6
MODULE=github.com/seaweedfs/seaweedfs
CACHE=${CLIPD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/clipd}
DEST=$CACHE/seaweedfs-$VERSION
BIN=$DEST/weed

if [[ -x $BIN ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$DEST"
exec 9>"$DEST/.build.lock"
flock 9
if [[ -x $BIN ]]; then   # another build finished while this one waited
  echo "$BIN"
  exit 0
fi

echo "seaweedfs: building $MODULE@$VERSION into $DEST (once; about 6 minutes on 2 cores)" >&2
dir=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [[ -z $dir || ! -d $dir ]]; then
  echo "seaweedfs: go mod download $MODULE@$VERSION gave no folder; is the Go module proxy reachable?" >&2
  exit 1
fi
src=$(mktemp -d "$DEST/src.XXXXXX")
trap 'rm -rf "$src"' EXIT
cp -r "$dir/." "$src"
chmod -R u+w "$src"
(cd "$src" && GOFLAGS=-mod=mod go build -o "$BIN.tmp" ./weed)
mv "$BIN.tmp" "$BIN"
echo "$BIN"
