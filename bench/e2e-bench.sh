#!/usr/bin/env bash
# End-to-end clipd embed throughput on this machine: B/32-shaped random weights, N URLs of
# realistic 1024x768 JPEGs served from 127.0.0.1, CPU backend (or $BACKEND). Prints the run's
# summary and its stats JSON (per-stage times). Usage: bench/e2e-bench.sh [N_URLS] [N_FILES]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500}
FILES=${2:-50}
BACKEND=${BACKEND:-cpu}
PY=${PYTHON:-/usr/bin/python3}
WORK=${WORK:-build/e2e-bench}
mkdir -p "$WORK"
# The same weights file as bench/cpu-bench.sh (made once, reused by both).
W=${BUILD:-build}/bench-weights/b32-openai-f32
[ -f "$W/model.safetensors" ] || $PY tests/reference/clip_ref.py make-weights --config b32 \
  --seed 1234 --naming openai --dtype f32 --gelu quick --out "$W" >/dev/null
[ -f "$WORK/img/photo_$(printf %02d $((FILES - 1))).jpg" ] || $PY tests/reference/make_images.py bench "$WORK/img" "$FILES" >/dev/null
[ -x bin/clipd ] || make -s clipd
go build -o "$WORK/imgserver" ./bench/imgserver
"$WORK/imgserver" -dir "$WORK/img" > "$WORK/addr" &
srv=$!
trap 'kill $srv 2>/dev/null' EXIT
for _ in $(seq 50); do [ -s "$WORK/addr" ] && break; sleep 0.1; done
addr=$(cat "$WORK/addr")
ls "$WORK/img" | grep '\.jpg$' | sort > "$WORK/files"
nf=$(wc -l < "$WORK/files")
: > "$WORK/urls.txt"
i=0
while [ $i -lt "$N" ]; do
  f=$(sed -n "$((i % nf + 1))p" "$WORK/files")
  echo "http://$addr/$f?n=$i" >> "$WORK/urls.txt"
  i=$((i + 1))
done
rm -rf "$WORK/out"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $N URLs of $nf files"
bin/clipd embed --input "$WORK/urls.txt" --weights "$W" --output "$WORK/out" \
  --backend "$BACKEND" --json --allow-private-networks ${EMBED_ARGS:-}
cat "$WORK/out/Images_Embedded.stats.json"
echo
