#!/usr/bin/env bash
# Soak benchmark (not a test): clipd embed over N URLs (default 200,000) served from
# 127.0.0.1 by bench/soakserver with FAULTS% (default 5) of them faulty (connection reset,
# 404, slow, truncated, corrupt image), the tiny test model on the CPU. It samples the
# process's RSS every second (WORK/rss.csv), then checks the final file: every input URL
# exactly once (embedded + failed = input, no duplicates), every faulty URL failed (slow ones
# embedded), every good one embedded. Usage: bench/soak.sh [N] [FAULTS]; EMBED_ARGS adds
# flags (e.g. "--memory 400MiB"), CLIPD another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
FAULTS=${2:-5}
PY=${PYTHON:-/usr/bin/python3}
WORK=${WORK:-build/soak}
W=testdata/golden/tiny_openai_quick_f32
mkdir -p "$WORK/img"
cp cmd/clipd/testdata/e2e/img_*.jpg "$WORK/img/"
CLIPD=${CLIPD:-bin/clipd}
[ -x "$CLIPD" ] || make -s clipd
go build -o "$WORK/soakserver" ./bench/soakserver
"$WORK/soakserver" -dir "$WORK/img" -faults "$FAULTS" > "$WORK/addr" &
srv=$!
trap 'kill $srv 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$WORK/addr" ] && break; sleep 0.1; done
addr=$(cat "$WORK/addr")
awk -v n="$N" -v a="$addr" 'BEGIN { for (i = 0; i < n; i++) printf "http://%s/img/%d.jpg\n", a, i }' > "$WORK/urls.txt"
rm -rf "$WORK/out"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load $(cut -d' ' -f1-3 /proc/loadavg), $N URLs, $FAULTS% faults"
start=$(date +%s.%N)
"$CLIPD" --quiet embed --input "$WORK/urls.txt" --weights "$W" --output "$WORK/out" --backend cpu \
  --allow-private-networks --host-connections 256 --json ${EMBED_ARGS:-} &
pid=$!
echo "seconds,rss_kib,hwm_kib" > "$WORK/rss.csv"
while kill -0 $pid 2>/dev/null; do
  s=$(awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {print r "," h}' /proc/$pid/status 2>/dev/null || true)
  [ -n "$s" ] && [ "$s" != "," ] && echo "$(echo "$(date +%s.%N) - $start" | bc | xargs printf %.1f),$s" >> "$WORK/rss.csv"
  sleep 1
done
wait $pid && code=0 || code=$?
echo "clipd exit $code after $(echo "$(date +%s.%N) - $start" | bc | xargs printf %.1f) s"
[ "$code" -eq 0 ] || exit "$code"
$PY - "$WORK/out/Images_Embedded.stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); g = s["stages"]
retries = ", ".join("%s %d" % (r["reason"], r["count"]) for r in g["fetch_retry_reasons"])
print("%.0f images/s over %.1f s; fetch retries %d (%s); merge %.1f s" % (s["images_per_s"], s["elapsed_s"], g["fetch_retries"], retries, g["merge_s"]))
print(s["plan"])
PY
# The RSS curve at the start, the middle and the end (and the peak).
$PY - "$WORK/rss.csv" <<'PY'
import csv, sys
rows = [(float(r["seconds"]), int(r["rss_kib"]), int(r["hwm_kib"])) for r in csv.DictReader(open(sys.argv[1]))]
pick = lambda f: rows[min(int(f * (len(rows) - 1)), len(rows) - 1)]
for name, f in [("start", 0.05), ("25%", 0.25), ("middle", 0.5), ("75%", 0.75), ("end", 1.0)]:
    t, r, h = pick(f)
    print(f"RSS {name:>6} t={t:7.1f}s  {r/1024:7.1f} MiB")
print(f"peak RSS (VmHWM) {max(h for _, _, h in rows)/1024:.1f} MiB over {len(rows)} samples")
PY
# Accounting: every URL once, and each where its fault says.
"$WORK/soakserver" -faults "$FAULTS" -list "$N" > "$WORK/faults.txt"
$PY - "$WORK/out/Images_Embedded.h5" "$WORK/urls.txt" "$WORK/faults.txt" <<'PY'
import collections, h5py, sys
path, listfile, faultfile = sys.argv[1:4]
f = h5py.File(path, "r")
s = lambda ds: [x.decode() if isinstance(x, bytes) else str(x) for x in ds[:]]
emb, failed, reasons = s(f["urls"]), s(f["failed_urls"]), s(f["failed_reasons"])
inp = [l.strip() for l in open(listfile) if l.strip()]
fault = [l.strip() for l in open(faultfile)]
print(f"input {len(inp)}, embedded {len(emb)}, failed {len(failed)}, embeddings shape {f['embeddings'].shape}")
print("faults served:", dict(collections.Counter(fault)))
errs = []
if len(emb) + len(failed) != len(inp): errs.append("embedded + failed != input")
dup = [u for u, c in collections.Counter(emb + failed).items() if c > 1]
if dup: errs.append(f"{len(dup)} URLs more than once, e.g. {dup[:3]}")
missing = set(inp) - set(emb + failed)
if missing: errs.append(f"{len(missing)} URLs missing, e.g. {sorted(missing)[:3]}")
n_of = lambda u: int(u.rsplit("/", 1)[1][:-4])
wrong = [(u, fault[n_of(u)], "embedded") for u in emb if fault[n_of(u)] not in ("ok", "slow")]
reason_by_fault = collections.defaultdict(collections.Counter)
for u, r in zip(failed, reasons):
    k = fault[n_of(u)]
    reason_by_fault[k][r] += 1
    if k in ("ok", "slow"): wrong.append((u, k, r))
if wrong: errs.append(f"{len(wrong)} URLs ended against their fault, e.g. {wrong[:5]}")
for k, c in sorted(reason_by_fault.items()): print(f"  failed {k}: {dict(c)}")
print("ACCOUNTING OK: every URL once, every faulty one failed, every good and slow one embedded" if not errs else "ACCOUNTING FAILED: " + "; ".join(errs))
sys.exit(1 if errs else 0)
PY
