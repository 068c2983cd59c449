#!/usr/bin/env bash
# slurm.sh: runs the Slurm recipe (deploy/slurm/) against a real one-node Slurm started here:
# munged, slurmctld and slurmd (Debian's slurm-wlm and munge, as root, with their own socket,
# ports, config and state in a temporary folder), four fake GPUs so that the recipe's GPU
# request is scheduled as written, and a URL list served slowly on 127.0.0.1 with the tiny
# model on the CPU backend. It submits the array with deploy/slurm/submit.sh, kills task 1's
# clipd with SIGKILL once it has written a chunk, checks that the array's states and exit
# codes say so and that the merge job was cancelled, submits again (only shard 1 runs, and
# fetches only what its chunks lack), waits for the merge job, and checks that the merged
# file equals a single-process run of the same list dataset by dataset, every URL once.
#
#   bash tests/cluster/slurm.sh                  (make test runs it; needs root or sudo -n)
#   SLURM_TRANSCRIPT=FILE  also write the transcript (commands, job states, merge result) there
#   CLIPD_REQUIRE_SLURM=1  fail instead of skipping where Slurm cannot start
#
# Everything it starts is stopped at the end, on failure too; it gives up after a few minutes.
set -euo pipefail
if [ -n "${SLURM_TRANSCRIPT:-}" ]; then SLURM_TRANSCRIPT=$(realpath -m "$SLURM_TRANSCRIPT"); fi
cd "$(dirname "$0")/../.."
root=$PWD
CLIPD=${CLIPD:-$root/bin/clipd}
PY=/usr/bin/python3
WEIGHTS=$root/testdata/golden/tiny_openai_quick_f32
IMAGES=$root/cmd/clipd/testdata/e2e
SHARDS=4
KILLED=1 # the task whose clipd is killed

skip() {
  if [ "${CLIPD_REQUIRE_SLURM:-0}" = 1 ]; then echo "slurm test: FAIL (CLIPD_REQUIRE_SLURM=1): $*" >&2; exit 1; fi
  echo "slurm test: SKIP: $*"
  exit 0
}
if [ "$(id -u)" != 0 ]; then
  # CI runners often run as a user with password-less sudo: the daemons need root.
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env=SLURM_TRANSCRIPT,CLIPD_REQUIRE_SLURM,KEEP_TMP,CLIPD bash "$0" "$@"
  fi
  skip "needs root (or password-less sudo) to start munged, slurmctld and slurmd"
fi
for b in munged slurmctld slurmd sbatch squeue scontrol scancel; do
  command -v "$b" >/dev/null || skip "$b is not installed (scripts/install-deps.sh installs slurm-wlm and munge)"
done
[ -x "$CLIPD" ] || { echo "slurm test: FAIL: $CLIPD is missing: run make build" >&2; exit 1; }
$PY -c 'import h5py' 2>/dev/null || { echo "slurm test: FAIL: $PY lacks h5py (make deps)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/clipd-slurm.XXXXXX)
chmod 755 "$tmp"
export SLURM_CONF=$tmp/slurm.conf
transcript=$tmp/transcript.txt
pids=()        # the processes this script started, stopped at the end
server_pid=""

# say: a line in the transcript and on stdout. run: a command, its output and its exit code.
say() { echo "$*" | tee -a "$transcript"; }
run() {
  local rc=0
  local a line="\$"
  for a in "$@"; do [[ $a =~ [[:space:]] ]] && line+=" '$a'" || line+=" $a"; done
  echo "$line" | tee -a "$transcript"
  "$@" >"$tmp/run.out" 2>&1 || rc=$?
  tee -a "$transcript" <"$tmp/run.out"
  [ $rc = 0 ] || echo "(exit $rc)" | tee -a "$transcript"
  return $rc
}
# states: one line per job of an array or a job: id, task, state, reason, exit code.
states() {
  scontrol -o show job "$1" | awk '{
      id = ""; task = "-"; st = ""; rs = ""; ec = ""
      for (i = 1; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "JobId") id = kv[2]; else if (kv[1] == "ArrayTaskId") task = kv[2]
        else if (kv[1] == "JobState") st = kv[2]; else if (kv[1] == "Reason") rs = kv[2]
        else if (kv[1] == "ExitCode") ec = kv[2]
      }
      printf "job %s task %s: %s reason=%s exit=%s\n", id, task, st, rs, ec
    }' | sort -k4,4n
}
fail() {
  echo "slurm test: FAIL: $*" | tee -a "$transcript" >&2
  for f in "$tmp"/log/slurmctld.log "$tmp"/log/slurmd.log "$tmp"/out/logs/*.log; do
    [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}

cleanup() {
  set +e
  if [ -f "$tmp/slurmctld.started" ]; then
    scancel --full --user=root >/dev/null 2>&1
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for p in "${pids[@]}" $server_pid; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    alive=0
    for p in "${pids[@]}" $server_pid; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for p in "${pids[@]}" $server_pid; do kill -KILL "$p" 2>/dev/null; done
  # What the jobs started (slurmstepd, the batch scripts, clipd) carries this cluster's
  # SLURM_CONF in its environment: stop what is left of it, by pid.
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [ "$p" = $$ ] && continue
    if { tr '\0' '\n' <"$e"; } 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF"; then kill -KILL "$p" 2>/dev/null; fi
  done
  if [ -n "${SLURM_TRANSCRIPT:-}" ] && [ -f "$transcript" ]; then
    sed "s|$tmp|\$TMP|g; s|$root/||g" "$transcript" >"$SLURM_TRANSCRIPT" # paths as a reader's
  fi
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "slurm test: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s; fails after SECONDS.
wait_until() {
  local limit=$1 what=$2
  shift 2
  local end=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $end ] || fail "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}

say "# clipd on a one-node Slurm ($(slurmd -V)), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, tiny model on the CPU backend"

# 1. The images, served slowly (0.2 s an answer) so that a task runs long enough to be killed.
$PY tests/cluster/imgserver.py "$IMAGES" 0.2 "$tmp/requests.log" >"$tmp/server.port" 2>"$tmp/server.err" &
server_pid=$!
wait_until 15 "the image server" test -s "$tmp/server.port"
base="http://127.0.0.1:$(cat "$tmp/server.port")"
mapfile -t good < <(tr -s ' \t' '\n' <"$IMAGES/GOOD" | grep .)
list=$tmp/urls.txt
: >"$list"
for ((k = 0; k < 198; k++)); do echo "$base/${good[k % ${#good[@]}]}?n=$k" >>"$list"; done
echo "$base/missing" >>"$list"
echo "$base/corrupt.jpg" >>"$list"
say "# $(wc -l <"$list") URLs on $base (198 images, a 404, a corrupt JPEG: about 50 a shard)"

# 2. The reference: one process, the whole list.
args=(--weights "$WEIGHTS" --backend cpu --threads 1 --batch-size 1 --chunk-size 5 --retries 0 --timeout 20s --allow-private-networks)
run "$CLIPD" --quiet embed -i "$list" -o "$tmp/single" "${args[@]}" --connections 16 || fail "the single-process run failed"

# 3. A one-node cluster: munge with its own key and socket, Slurm with its own ports.
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/dev" "$tmp/out"
chmod 711 "$tmp/munge"
head -c 1024 /dev/urandom >"$tmp/munge/munge.key"
chmod 400 "$tmp/munge/munge.key"
socket=$tmp/munge/munge.socket
munged -F --force --key-file="$tmp/munge/munge.key" --socket="$socket" --pid-file="$tmp/munge/munged.pid" \
  --log-file="$tmp/log/munged.log" --seed-file="$tmp/munge/munged.seed" >"$tmp/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.2; done
[ -S "$socket" ] || skip "munged did not start: $(tail -n 3 "$tmp/log/munged.log" "$tmp/log/munged.out" 2>/dev/null | tr '\n' ' ')"

host=$(hostname -s)
read -r ctld_port slurmd_port < <($PY -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 / 2)}' /proc/meminfo)
# Fake GPUs: Slurm wants a device file per GPU; these are /dev/null's numbers.
for i in 0 1 2 3; do mknod "$tmp/dev/gpu$i" c 1 3 2>/dev/null || skip "cannot make device nodes here (mknod): no fake GPUs"; done
cat >"$SLURM_CONF" <<EOF
ClusterName=clipdtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$tmp/log/jobcomp.log
MinJobAge=600
ReturnToService=2
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem_mb Gres=gpu:4 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
echo "NodeName=$host Name=gpu File=$tmp/dev/gpu[0-3]" >"$tmp/gres.conf"
slurmctld -D >"$tmp/log/slurmctld.out" 2>&1 &
pids+=($!)
touch "$tmp/slurmctld.started"
slurmd -D >"$tmp/log/slurmd.out" 2>&1 &
pids+=($!)
node_idle() { scontrol -o show node "$host" 2>/dev/null | grep -q 'State=IDLE '; }
for _ in $(seq 150); do node_idle && break; sleep 0.2; done
node_idle || skip "slurm did not start here (node not idle after 30 s): $(scontrol -o show node "$host" 2>&1 | grep -o 'State=[^ ]*\|Reason=.*' | tr '\n' ' ') $(tail -n 2 "$tmp/log/slurmctld.log" "$tmp/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
run sinfo -N -o '%N %T %c CPUs %G'

# 4. The recipe, as a user runs it, with the test's settings in the environment.
export CLIPD CLIPD_WEIGHTS=$WEIGHTS CLIPD_BACKEND=cpu
export CLIPD_ARGS="--threads 1 --batch-size 1 --chunk-size 5 --connections 2 --retries 0 --timeout 20s --allow-private-networks"
say "# CLIPD_BACKEND=$CLIPD_BACKEND CLIPD_WEIGHTS=testdata/golden/tiny_openai_quick_f32 CLIPD_ARGS=\"$CLIPD_ARGS\""
submit=(deploy/slurm/submit.sh -i "$list" -o "$tmp/out" -n "$SHARDS" --cpus-per-task=1 --mem=512M --time=10)
run "${submit[@]}" || fail "submit.sh failed"
read -r array1 merge1 < <(sed -n 's/^ARRAY_JOB=\([0-9]*\) MERGE_JOB=\([0-9]*\)$/\1 \2/p' "$tmp/run.out")
[ -n "${array1:-}" ] && [ -n "${merge1:-}" ] || fail "submit.sh printed no job ids"
# Submitting again while those jobs are queued is refused: two tasks on one shard folder.
if run "${submit[@]}"; then fail "a second submission while the first is queued was accepted"; fi
grep -q "still queued or running" "$tmp/run.out" || fail "the refused submission does not say why"

# 5. Task 1's clipd, killed with SIGKILL once it wrote a chunk file (and before it finished).
shard1=$(printf '%s/out/shard-%05d-of-%05d' "$tmp" $KILLED $SHARDS)
task_pid() {
  local e p env
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = clipd ] || continue
    env=$({ tr '\0' '\n' <"$e"; } 2>/dev/null) || continue
    if grep -qxF "SLURM_CONF=$SLURM_CONF" <<<"$env" && grep -qx "SLURM_ARRAY_JOB_ID=$array1" <<<"$env" &&
      grep -qx "SLURM_ARRAY_TASK_ID=$KILLED" <<<"$env"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
has_chunk() { compgen -G "$shard1/Images_Embedded_[0-9]*.h5" >/dev/null; }
wait_until 90 "task $KILLED's first chunk file" has_chunk
pid=$(task_pid) || fail "no clipd process of task $KILLED"
[ ! -f "$shard1/Images_Embedded.h5" ] || fail "task $KILLED finished before it could be killed"
run squeue -o '%.10i %.12j %.8T %.10M %R'
say "\$ kill -KILL $pid    # task $KILLED's clipd, after $(compgen -G "$shard1/Images_Embedded_[0-9]*.h5" | wc -l) chunk file(s)"
kill -KILL "$pid"

# 6. The array ends with task 1 failed by signal 9; the merge job can never run: cancelled.
array_done() { [ -z "$(squeue -h -j "$array1" 2>/dev/null)" ] && [ -z "$(squeue -h -j "$merge1" 2>/dev/null)" ]; }
wait_until 120 "the first array and its merge job to leave the queue" array_done
say "\$ scontrol show job $array1; scontrol show job $merge1    # (states, reasons, exit codes)"
states "$array1" | tee -a "$transcript" >"$tmp/states1"
states "$merge1" | tee -a "$transcript" >>"$tmp/states1"
grep -q "task $KILLED: FAILED .*exit=0:9\$" "$tmp/states1" || fail "task $KILLED is not FAILED by signal 9"
[ "$(grep -c 'COMPLETED reason=None exit=0:0$' "$tmp/states1")" = $((SHARDS - 1)) ] || fail "the other tasks did not all complete"
grep -q "^job $merge1 task -: CANCELLED reason=DependencyNeverSatisfied" "$tmp/states1" || fail "the merge job was not cancelled for its dependency"
[ ! -e "$tmp/out/Images_Embedded.h5" ] || fail "a merged file exists although a task failed"
run tail -n 1 "$tmp/log/jobcomp.log"
killed_at=$(wc -l <"$tmp/requests.log") # no task runs now

# 7. The same submission again: only shard 1 runs, resuming; then the merge.
run "${submit[@]}" || fail "the second submit.sh failed"
grep -q -- "--array=$KILLED\$" "$tmp/run.out" || fail "the resubmission is not --array=$KILLED alone"
read -r array2 merge2 < <(sed -n 's/^ARRAY_JOB=\([0-9]*\) MERGE_JOB=\([0-9]*\)$/\1 \2/p' "$tmp/run.out")
[ -n "${array2:-}" ] && [ -n "${merge2:-}" ] || fail "submit.sh printed no job ids"
merge_done() { [ -z "$(squeue -h -j "$array2,$merge2" 2>/dev/null)" ]; }
wait_until 120 "the resubmitted task and the merge job" merge_done
say "\$ scontrol show job $array2; scontrol show job $merge2"
states "$array2" | tee -a "$transcript" >"$tmp/states2"
states "$merge2" | tee -a "$transcript" >>"$tmp/states2"
[ "$(grep -c 'COMPLETED reason=None exit=0:0$' "$tmp/states2")" = 2 ] || fail "the resubmitted task or the merge job did not complete"
run cat "$tmp/out/logs/embed-${array2}_$KILLED.log"
run cat "$tmp/out/logs/merge-$merge2.log"

# 8. The merged file is the single run's, dataset by dataset; every URL once; the rerun of
# shard 1 fetched only URLs of shard 1 that its chunks lacked.
run $PY tests/reference/compare_outputs.py "$tmp/out/Images_Embedded.h5" "$tmp/single/Images_Embedded.h5" ||
  fail "the merged file differs from the single-process run"
run $PY - "$tmp/out/Images_Embedded.h5" "$list" "$shard1/Images_Embedded.h5" "$tmp/requests.log" "$killed_at" <<'EOF' || fail "a URL is missing, twice, or fetched again"
import sys, h5py
merged, listf, shard1, reqlog, killed_at = sys.argv[1:]
s = lambda ds: [x.decode() if isinstance(x, bytes) else x for x in ds[:]]
f = h5py.File(merged, "r")
urls, failed = s(f["urls"]), s(f["failed_urls"])
want = [l.strip() for l in open(listf) if l.strip()]
assert len(urls) + len(failed) == len(want) and sorted(urls + failed) == sorted(want), "not every URL once"
g = h5py.File(shard1, "r")
shard_urls = set(s(g["urls"]) + s(g["failed_urls"]))
paths = [l.rstrip("\n") for l in open(reqlog)]
again = paths[int(killed_at):]
base = want[0][: want[0].index("/", len("http://"))]
assert again, "the rerun fetched nothing"
outside = [p for p in again if base + p not in shard_urls]
assert not outside, f"the rerun fetched URLs of other shards: {outside[:3]}"
assert len(set(again)) < len(shard_urls), f"the rerun fetched {len(set(again))} URLs, shard {len(shard_urls)}: it started over"
print(f"merged: {len(urls)} rows + {len(failed)} failures = the {len(want)} URLs, each once; "
      f"shard 1 has {len(shard_urls)} URLs, its rerun fetched {len(set(again))} (the rest came from its chunks)")
EOF
say "slurm test: ok"
