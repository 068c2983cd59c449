#!/usr/bin/env bash
# gpu-check.sh: the one-call check of the CUDA backend on a GPU machine (`make gpu-check`,
# see ../shared/GPU.md): card and driver, a build there, the C tests (test_cuda included),
# the comparison with the PyTorch reference, the per-stage diagnosis, CUDA graphs and the
# speed table (tests/reference/gpu_check.py), then (with what time is left) the device
# resize's host emulation, compute-sanitizer memcheck and the kernel lab, and the nvJPEG part
# (bench/jpeg_bench: each JPEG decoder against the CPU decoder on the decode fixtures and
# photo-like 1024x768 JPEGs, per-image fallbacks counted, decode images/s by decoder and batch
# size). The CPU decoder needs libturbojpeg, which the GPU machine lacks: run
# bench/gpu-prep.sh on a development machine first and carry build-deps/ along (the build
# then finds it through CLIP_TURBOJPEG_ROOT). Every step has a
# timeout and the whole run stays under ~8 minutes; a failed step is logged and the run goes
# on; the result table is printed last whatever happened. With $OUT set, the full log and the
# tables are written there. Without a GPU it degrades to a dry run (build + CPU checks).
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BUILD="${GPU_CHECK_BUILD:-build-gpu}"
LOGDIR="${OUT:-$ROOT/$BUILD/gpu-check}"
mkdir -p "$LOGDIR"
LOG="$LOGDIR/gpu-check.log"
TABLE="$LOGDIR/table.tsv"
: > "$LOG"
: > "$TABLE"
: > "$TABLE.speed"
exec > >(tee -a "$LOG") 2>&1

START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-465} # seconds for all steps; the table needs a few more
remaining() { echo $((BUDGET - ($(date +%s) - START))); }
# cap SECONDS: the smaller of SECONDS and what is left of the budget (at least 5)
cap() { local r; r=$(remaining); [ "$r" -lt "$1" ] && echo $((r > 5 ? r : 5)) || echo "$1"; }
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$TABLE"; echo "== [$3] $1: $2"; }
step() { echo; echo "=== $1 ($(date -u +%H:%M:%S), $(remaining)s left) ==="; }

# The toolkit's tools (nvcc, compute-sanitizer) when they are installed but not on PATH.
for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
done
export PATH

# Python with torch: $PYTHON, else python3 if it has torch, else Debian's /usr/bin/python3.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import torch, numpy, PIL' 2>/dev/null; then PY="$cand"; break; fi
  done
fi

step "1. card and driver"
HAVE_GPU=0
if command -v nvidia-smi >/dev/null && timeout 30 nvidia-smi >/dev/null 2>&1; then
  CARD=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | head -1)
  timeout 30 nvidia-smi
  row "card, driver, memory, max SM clock" "$CARD" INFO
  HAVE_GPU=1
else
  row "card" "no GPU (nvidia-smi missing or failing): dry run" SKIP
fi
command -v nvcc >/dev/null && row "nvcc" "$(nvcc --version | grep -o 'release [0-9.]*')" INFO \
  || row "nvcc" "not found" FAIL
row "python" "${PY:-none with torch} $([ -n "$PY" ] && "$PY" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)' 2>/dev/null)" INFO
row "date, host" "$(date -u +%Y-%m-%dT%H:%M:%SZ) $(hostname)" INFO

step "2. build ($BUILD, CUDA arch ${GPU_CHECK_ARCH:-90})"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles" # a fresh configure, whatever generator was used
BUILD_OK=0
TJ=()
[ -f "$ROOT/build-deps/turbojpeg/include/turbojpeg.h" ] && TJ=(-DCLIP_TURBOJPEG_ROOT="$ROOT/build-deps/turbojpeg")
if timeout "$(cap 120)" cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DCLIP_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES="${GPU_CHECK_ARCH:-90}" ${PY:+-DCLIP_PYTHON="$(command -v "$PY")"} "${TJ[@]}"; then
  t0=$(date +%s)
  if timeout "$(cap 300)" cmake --build "$BUILD" -j "$(nproc)"; then
    BUILD_OK=1
    row "build (CLIP_CUDA=ON)" "ok in $(($(date +%s) - t0))s ${GEN[*]:-make}" PASS
  else
    row "build (CLIP_CUDA=ON)" "failed or timed out, see $LOG" FAIL
  fi
else
  row "cmake configure (CLIP_CUDA=ON)" "failed, see $LOG" FAIL
fi
LIB="$ROOT/$BUILD/lib/libclipengine.so"

step "3. tests (ctest; test_cuda on its own)"
if [ "$BUILD_OK" = 1 ]; then
  ( cd "$BUILD" && timeout "$(cap 200)" ctest --output-on-failure --timeout 150 -j 4 -E '^test_cuda$' ) \
    > "$LOGDIR/ctest.log" 2>&1
  rc=$?
  cat "$LOGDIR/ctest.log"
  summary=$(grep -E "tests passed|tests failed" "$LOGDIR/ctest.log" | tail -1)
  failed=$(grep -E "^\s+[0-9]+ - " "$LOGDIR/ctest.log" | sed 's/^ *//' | tr '\n' ';')
  row "ctest (all but test_cuda)" "${summary:-no summary (rc $rc)} ${failed}" "$([ $rc = 0 ] && echo PASS || echo FAIL)"
  ( cd "$ROOT" && CLIP_SOURCE_DIR="$ROOT" CLIP_BUILD_DIR="$ROOT/$BUILD" timeout "$(cap 120)" "$BUILD/bin/test_cuda" ) \
    > "$LOGDIR/test_cuda.log" 2>&1
  rc=$?
  cat "$LOGDIR/test_cuda.log"
  if grep -q "^SKIP" "$LOGDIR/test_cuda.log"; then
    row "test_cuda" "$(grep '^SKIP' "$LOGDIR/test_cuda.log" | head -1)" "$([ "$HAVE_GPU" = 1 ] && echo FAIL || echo SKIP)"
  else
    row "test_cuda (tiny model: cuda vs cpu backend, 3 precisions, u8 crops)" \
      "rc $rc: $(grep -o 'test_cuda: [0-9]* checks, [0-9]* failures' "$LOGDIR/test_cuda.log" | tail -1)" \
      "$([ $rc = 0 ] && echo PASS || echo FAIL)"
  fi
else
  row "ctest" "not run (no build)" SKIP
fi

step "4. comparison with PyTorch, stages, graphs and speed (tests/reference/gpu_check.py)"
if [ "$BUILD_OK" = 1 ] && [ -n "$PY" ]; then
  DRY=()
  [ "$HAVE_GPU" = 1 ] || DRY=(--dry-run)
  t=$(cap 240) # ~80 s expected on an H100; torch.compile runs apart, last (step 8)
  timeout "$t" "$PY" tests/reference/gpu_check.py --lib "$LIB" --out "$ROOT/$BUILD/gpu-check-work" \
    --table "$TABLE" --artifacts "$LOGDIR/artifacts" "${DRY[@]}"
  rc=$?
  case $rc in
    0|1) ;; # 1: some check failed; its row says which
    124) row "gpu_check.py" "killed by its ${t}s timeout (the rows it wrote are complete)" FAIL ;;
    *) row "gpu_check.py" "exited with status $rc (crash?), see $LOG" FAIL ;;
  esac
else
  row "gpu_check.py" "not run (no build or no python with torch)" SKIP
fi

step "4b. nvJPEG: decoders vs the CPU decoder, fallbacks, decode images/s (bench/jpeg_bench)"
if [ "$BUILD_OK" = 1 ] && [ -x "$ROOT/$BUILD/bin/jpeg_bench" ] && [ "$(remaining)" -gt 60 ]; then
  if grep -q "CLIP_TURBOJPEG_LIB:FILEPATH=.*NOTFOUND" "$BUILD/CMakeCache.txt" 2>/dev/null; then
    row "cpu jpeg decoder" "no libturbojpeg in this build: run bench/gpu-prep.sh and carry build-deps/" FAIL
  fi
  JDIR="$ROOT/$BUILD/jpeg-set"
  rm -rf "$JDIR" && mkdir -p "$JDIR"
  cp internal/pipeline/decode/testdata/* cmd/clipd/testdata/e2e/* "$JDIR"/ 2>/dev/null
  rm -f "$JDIR/GOOD"
  NPHOTO=${GPU_CHECK_JPEGS:-48}
  if [ -n "$PY" ] && timeout "$(cap 60)" "$PY" tests/reference/make_images.py bench "$JDIR/photos" "$NPHOTO" >/dev/null; then
    mv "$JDIR"/photos/* "$JDIR"/ && rmdir "$JDIR/photos"
  else
    row "jpeg set" "make_images.py bench failed: fixtures only" SKIP
  fi
  W="$ROOT/$BUILD/gpu-check-work/weights-b32"
  [ -f "$W/model.safetensors" ] || W="$ROOT/$BUILD/gpu-check-work/weights-tiny"
  [ -f "$W/model.safetensors" ] || W="$ROOT/testdata/golden/tiny_openai_quick_f32"
  timeout "$(cap 150)" "$ROOT/$BUILD/bin/jpeg_bench" --weights "$W" --dir "$JDIR" --batches 32,128,256 \
    --iters 5 > "$LOGDIR/jpeg_bench.log" 2>&1
  rc=$?
  cat "$LOGDIR/jpeg_bench.log"
  while IFS= read -r l; do
    case "$l" in
      FIDELITY*) row "nvjpeg $(echo "$l" | awk '{print $2}') vs cpu decoder ($(basename "$W"))" \
                   "$(echo "$l" | sed -E 's/^FIDELITY +[^ ]+ +//; s/  FAIL$//')" "$(case "$l" in *FAIL) echo FAIL;; *) echo INFO;; esac)" ;;
      STATS*) row "decode counters $(echo "$l" | awk '{print $2}')" "$(echo "$l" | sed -E 's/^STATS +[^ ]+ +//')" INFO ;;
      SPEED\ \ *) printf '%s\t%s\t%s\n' "jpeg $(echo "$l" | awk '{print $2, $3, $4}' | tr -d :)" \
                   "$(echo "$l" | sed -E 's/.*decode\+resize ([0-9]+).*/\1/')" \
                   "decode+resize; e2e $(echo "$l" | sed -E 's/.*end to end ([0-9]+).*/\1/') img/s" >> "$TABLE.speed" ;;
      "SPEED cpu"*) row "cpu backend embed_encoded (reference)" "$(echo "$l" | cut -d' ' -f5-)" INFO ;;
      SKIP*) row "jpeg_bench" "$l" SKIP ;;
      FAIL*) row "jpeg_bench" "$l" FAIL ;;
    esac
  done < "$LOGDIR/jpeg_bench.log"
  case $rc in
    0|1) ;;
    124) row "jpeg_bench" "killed by its timeout" FAIL ;;
    *) row "jpeg_bench" "exited with status $rc (crash?), see $LOGDIR/jpeg_bench.log" FAIL ;;
  esac
else
  row "jpeg_bench" "not run (no build or under 60s left)" SKIP
fi

step "5. device resize, host emulation (bench/cuda/resize_emu)"
if [ "$BUILD_OK" = 1 ] && command -v nvcc >/dev/null && [ "$(remaining)" -gt 40 ]; then
  if timeout "$(cap 90)" make -s -C bench/cuda resize_emu LIBDIR="$ROOT/$BUILD/lib" OUTDIR="$ROOT/$BUILD/lab" \
       && out=$(timeout "$(cap 60)" "$ROOT/$BUILD/lab/resize_emu" 300); then
    row "resize emulation vs cpu uint8" "$(echo "$out" | tail -1)" PASS
  else
    row "resize emulation vs cpu uint8" "failed: $(echo "${out:-build failed}" | tail -2 | tr '\n' ' ')" FAIL
  fi
else
  row "resize emulation" "not run (no build, no nvcc or under 40s left)" SKIP
fi

step "6. compute-sanitizer memcheck (test_cuda)"
if [ "$BUILD_OK" = 1 ] && [ "$HAVE_GPU" = 1 ] && command -v compute-sanitizer >/dev/null && [ "$(remaining)" -gt 60 ]; then
  ( cd "$ROOT" && CLIP_SOURCE_DIR="$ROOT" CLIP_TEST_CUDA_QUICK=1 timeout "$(cap 120)" compute-sanitizer --tool memcheck \
      --error-exitcode 9 --leak-check no "$BUILD/bin/test_cuda" ) > "$LOGDIR/memcheck.log" 2>&1
  rc=$?
  tail -25 "$LOGDIR/memcheck.log"
  errs=$(grep -o "ERROR SUMMARY: [0-9]* error" "$LOGDIR/memcheck.log" | tail -1)
  case $rc in
    0) row "memcheck test_cuda" "${errs:-ok}" PASS ;;
    124) row "memcheck test_cuda" "timed out (${errs:-no summary})" FAIL ;;
    *) row "memcheck test_cuda" "rc $rc ${errs}" FAIL ;;
  esac
else
  row "memcheck" "not run (no GPU, build, compute-sanitizer, or under 60s left)" SKIP
fi

step "7. kernel lab (bench/cuda: attention, layernorm, gelu variants vs CPU reference, timed)"
if [ "$BUILD_OK" = 1 ] && [ "$HAVE_GPU" = 1 ] && [ "$(remaining)" -gt 200 ]; then
  if timeout "$(cap 60)" make -s -C bench/cuda lab OUTDIR="$ROOT/$BUILD/lab" ARCH="${GPU_CHECK_ARCH:-90}"; then
    for k in attention layernorm gelu; do
      [ "$(remaining)" -gt 15 ] || break
      timeout "$(cap 30)" "$ROOT/$BUILD/lab/$k" > "$LOGDIR/lab_$k.log" 2>&1
      rc=$?
      cat "$LOGDIR/lab_$k.log"
      row "lab $k" "$(grep -E '^(PASS|FAIL)' "$LOGDIR/lab_$k.log" | tr '\n' ' ' | cut -c1-200)" \
        "$([ $rc = 0 ] && echo PASS || echo FAIL)"
    done
  else
    row "kernel lab build" "failed" FAIL
  fi
else
  row "kernel lab" "not run (no GPU, no build or no time)" SKIP
fi

step "8. PyTorch torch.compile baseline (only with time left)"
if [ "$BUILD_OK" = 1 ] && [ -n "$PY" ] && [ "$HAVE_GPU" = 1 ] && [ "$(remaining)" -gt 120 ]; then
  t=$(cap $(($(remaining) - 10)))
  timeout "$t" "$PY" tests/reference/gpu_check.py --lib "$LIB" --out "$ROOT/$BUILD/gpu-check-work" \
    --table "$TABLE" --compile-only --compile-cap $((t - 40))
  [ $? = 124 ] && row "torch.compile" "killed by its ${t}s timeout" SKIP
else
  row "torch.compile" "not run (no GPU or under 120s left)" SKIP
fi

echo
echo "=================================== RESULTS ($(($(date +%s) - START))s) ==================================="
awk -F'\t' '{ printf "%-5s %-44s %s\n", $3, $1, $2 }' "$TABLE"
if [ -s "$TABLE.speed" ]; then
  echo
  printf '%-62s %12s  %s\n' "speed (8.82 GFLOP/image for B/32)" "images/s" "note"
  awk -F'\t' '{ printf "%-62s %12s  %s\n", $1, $2, $3 }' "$TABLE.speed"
fi
echo
echo "log: $LOG"
if grep -q "	FAIL$" "$TABLE"; then exit 1; fi
exit 0
