#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (`make fuzz FUZZTIME=60s`; `make test` runs it with
# 3s so the targets cannot rot): the Go fuzz targets (every `func FuzzX(f *testing.F)` in a
# _test.go file, found here, so new ones join without an edit), then the libFuzzer + ASan/UBSan
# harnesses of engine/fuzz, built with clang in FUZZ_BUILD. Prints the executions per target
# and exits non-zero when any target found a failure: Go writes the input to
# PKG/testdata/fuzz/FuzzX/ (commit it with the fix: it becomes a regression seed), libFuzzer
# to FUZZ_BUILD/artifacts/ (copy it into engine/fuzz/corpus/NAME/ with the fix).
#
# Environment: FUZZTIME (a Go duration of whole seconds or minutes, or seconds: 3s, 90s, 2m,
# 60), FUZZ_BUILD (build-fuzz), GO_TEST_FLAGS (extra go test flags, e.g. the build tags the
# Makefile links with), FUZZ_ONLY (a regular expression: run only the targets it matches).
set -uo pipefail

FUZZTIME=${FUZZTIME:-60s}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_ONLY=${FUZZ_ONLY:-.}
read -r -a GO_TEST_FLAGS <<<"${GO_TEST_FLAGS:-}"

case "$FUZZTIME" in
  *[0-9]s) secs=${FUZZTIME%s} ;;
  *[0-9]m) secs=$((${FUZZTIME%m} * 60)) ;;
  *[0-9]h) secs=$((${FUZZTIME%h} * 3600)) ;;
  *) secs=$FUZZTIME ;;
esac
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "fuzz: FUZZTIME=$FUZZTIME: want whole seconds, minutes or hours, e.g. 3s, 90s or 2m" >&2
  exit 2
fi

summary=()
failed=0
note() { # target, executions, seconds, result
  summary+=("$(printf '%-52s %12s %6s  %s' "$1" "$2" "$3" "$4")")
}

# Go: one `go test -fuzz` per target, since -fuzz takes one target at a time.
mapfile -t targets < <(grep -rHo --include='*_test.go' --exclude-dir='build*' --exclude-dir=testdata \
  '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' . | sed -E 's|^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*).*|\1 \2|' | sort)
for entry in "${targets[@]}"; do
  read -r dir name <<<"$entry"
  [[ "$dir $name" =~ $FUZZ_ONLY ]] || continue
  log=$(mktemp)
  echo "fuzz: go $dir $name for ${secs}s"
  start=$SECONDS
  go test "${GO_TEST_FLAGS[@]}" -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" "./$dir" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [ $rc -ne 0 ] && grep -q '^    context deadline exceeded$' "$log" && ! grep -q 'Failing input written' "$log"; then
    # Go 1.26's coordinator can report its own -fuzztime deadline as a failure when a worker
    # is busy (often minimizing) as time runs out: golang/go#75804, fixed in Go 1.27. No
    # input failed; the target ran its time.
    note "$dir $name" "${execs:-?}" $((SECONDS - start)) "ok (go#75804: the fuzztime deadline reported as a failure)"
  elif [ $rc -ne 0 ]; then
    failed=1
    tail -30 "$log"
    note "$dir $name" "${execs:-?}" $((SECONDS - start)) "FAILED (input in $dir/testdata/fuzz/$name/)"
  else
    note "$dir $name" "${execs:-?}" $((SECONDS - start)) ok
  fi
  rm -f "$log"
done

# C: the harnesses, built in their own folder with clang.
c_targets=()
for name in json safetensors weights; do
  [[ "engine/fuzz fuzz_$name" =~ $FUZZ_ONLY ]] && c_targets+=("$name")
done
if [ ${#c_targets[@]} -gt 0 ]; then
  if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: clang is missing (make deps installs it); the C harnesses cannot be built" >&2
    exit 2
  fi
  if [ ! -f "$FUZZ_BUILD/CMakeCache.txt" ]; then
    cmake -S . -B "$FUZZ_BUILD" -DCLIP_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 2
  fi
  cmake --build "$FUZZ_BUILD" -j "$(nproc)" >/dev/null || exit 2

  # Seeds beyond engine/fuzz/corpus: the committed tiny models (whole files; their JSON
  # configs for the JSON parser) and, for the loader, each model joined to its config.
  seeds="$FUZZ_BUILD/seeds"
  rm -rf "$seeds" && mkdir -p "$seeds/json" "$seeds/safetensors" "$seeds/weights"
  for d in testdata/golden/*/; do
    n=$(basename "$d")
    cp "$d/model.safetensors" "$seeds/safetensors/$n"
    cp "$d/model.safetensors" "$seeds/weights/$n"
    for c in config.json open_clip_config.json; do
      [ -f "$d/$c" ] || continue
      cp "$d/$c" "$seeds/json/$n-$c"
      kind=h
      [ "$c" = open_clip_config.json ] && kind=o
      { cat "$d/model.safetensors"; printf '\n--clip-fuzz-config--\n%s' "$kind"; cat "$d/$c"; } >"$seeds/weights/$n-$c"
    done
  done

  mkdir -p "$FUZZ_BUILD/artifacts"
  for name in "${c_targets[@]}"; do
    corpus="$FUZZ_BUILD/corpus/$name" # what a run adds; the committed seeds stay as they are
    mkdir -p "$corpus" "engine/fuzz/corpus/$name"
    log=$(mktemp)
    echo "fuzz: C fuzz_$name for ${secs}s"
    start=$SECONDS
    "$FUZZ_BUILD/bin/fuzz_$name" "$corpus" "engine/fuzz/corpus/$name" "$seeds/$name" \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 \
      -artifact_prefix="$FUZZ_BUILD/artifacts/$name-" >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ $rc -ne 0 ]; then
      failed=1
      grep -v '^#' "$log" | tail -40
      note "engine/fuzz fuzz_$name" "${execs:-?}" $((SECONDS - start)) "FAILED (input in $FUZZ_BUILD/artifacts/)"
    else
      note "engine/fuzz fuzz_$name" "${execs:-?}" $((SECONDS - start)) ok
    fi
    rm -f "$log"
  done
fi

echo
printf '%-52s %12s %6s  %s\n' "target (FUZZTIME=${secs}s each)" executions wall_s result
printf '%s\n' "${summary[@]}"
exit $failed
