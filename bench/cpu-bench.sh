#!/usr/bin/env bash
# CPU engine vs PyTorch fp32 on the same random B/32-shaped weights, same batch and threads,
# in one run. Usage: bench/cpu-bench.sh [batch] [threads] [iters]
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${1:-8}
THREADS=${2:-2}
ITERS=${3:-5}
BUILD=${BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
W=$BUILD/bench-weights/b32-openai-f32
if [ ! -f "$W/model.safetensors" ]; then
  $PY tests/reference/clip_ref.py make-weights --config b32 --seed 1234 --naming openai \
    --dtype f32 --gelu quick --out "$W" >/dev/null
fi
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -m), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
engine=$("$BUILD/bin/clip_bench" --weights "$W" --backend cpu --batch "$BATCH" --threads "$THREADS" --iters "$ITERS" --warmup 1 --json)
torch=$($PY bench/torch_cpu_bench.py --weights "$W" --batch "$BATCH" --threads "$THREADS" --iters "$ITERS" --json)
echo "$engine"
echo "$torch"
$PY - "$engine" "$torch" <<'PYEOF'
import json, sys
e, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"| {e['backend']} | batch {e['batch']} | {e['images_per_s']:.2f} img/s |")
print(f"| {t['backend']} | batch {t['batch']} | {t['images_per_s']:.2f} img/s |")
print(f"ratio engine/pytorch: {e['images_per_s'] / t['images_per_s']:.2f}x")
PYEOF
