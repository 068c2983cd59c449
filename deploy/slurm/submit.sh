#!/usr/bin/env bash
# submit.sh: submits a clipd run to Slurm: an array job (embed.sbatch), one task per shard
# whose output is not finished yet, and the merge job (merge.sbatch) that runs after every
# task of that array succeeded (--dependency=afterok, cancelled if one fails).
#
#   deploy/slurm/submit.sh -i INPUT -o OUTPUT -n SHARDS [-p MAX_RUNNING] [SBATCH_OPTION...]
#
# OUTPUT must be on a filesystem that every node sees. Run the same command again after
# tasks died (a node lost, a time limit, a kill): it submits only the shards without a
# finished OUTPUT/shard-<i>-of-<n>/Images_Embedded.h5, and those resume from their chunk
# files; then the merge. SBATCH_OPTIONs go to the array job (e.g. --gpus-per-task=1
# --time=8:00:00); --partition and --account for both jobs go in SBATCH_PARTITION and
# SBATCH_ACCOUNT. CLIPD, CLIPD_WEIGHTS, CLIPD_BACKEND and CLIPD_ARGS pass through to the
# tasks (see embed.sbatch). The last line printed is "ARRAY_JOB=<id> MERGE_JOB=<id>".
set -euo pipefail

usage() {
  echo "usage: $0 -i INPUT -o OUTPUT -n SHARDS [-p MAX_RUNNING] [SBATCH_OPTION...]" >&2
  exit 2
}
here=$(cd "$(dirname "$0")" && pwd)
input="" output="" shards="" throttle=""
while [ $# -gt 0 ]; do
  case $1 in
    -i | -o | -n | -p) [ $# -ge 2 ] || usage ;;&
    -i) input=$2; shift 2 ;;
    -o) output=$2; shift 2 ;;
    -n) shards=$2; shift 2 ;;
    -p) throttle=$2; shift 2 ;;
    -h | --help) usage ;;
    --) shift; break ;;
    *) break ;; # the sbatch options
  esac
done
[ -n "$input" ] && [ -n "$output" ] && [ -n "$shards" ] || usage
[[ $shards =~ ^[1-9][0-9]*$ ]] || { echo "submit: -n $shards: want the number of shards, e.g. 64" >&2; exit 2; }
[ -z "$throttle" ] || [[ $throttle =~ ^[1-9][0-9]*$ ]] || { echo "submit: -p $throttle: want a number of tasks" >&2; exit 2; }

# Paths as the tasks see them: absolute, since a task may start elsewhere.
if [ -e "$input" ]; then input=$(realpath "$input"); fi
output=$(realpath -m "$output")
mkdir -p "$output/logs"

# Two tasks must never write one shard folder at once (clipd does not lock it): while jobs
# of this output are still queued or running, submitting again is refused.
tag="clipd-output=$output"
if ! jobs=$(squeue --me -h -o '%i|%k'); then
  echo "submit: squeue failed (above): is the Slurm controller reachable from here?" >&2
  exit 1
fi
queued=$(awk -F'|' -v t="$tag" '$2 == t {print $1}' <<<"$jobs" | sort -u | tr '\n' ' ')
if [ -n "$queued" ]; then
  echo "submit: jobs of $output are still queued or running (${queued% }): wait for them to end, or scancel them, then submit again" >&2
  exit 1
fi

missing=()
for ((i = 0; i < shards; i++)); do
  printf -v final '%s/shard-%05d-of-%05d/Images_Embedded.h5' "$output" "$i" "$shards"
  [ -f "$final" ] || missing+=("$i")
done

export CLIPD_INPUT=$input CLIPD_OUTPUT=$output CLIPD_SHARDS=$shards
array_job=""
deps=()
if [ ${#missing[@]} -gt 0 ]; then
  # The missing indexes as ranges: 0-3,7,9-12.
  list="" start=${missing[0]} prev=${missing[0]}
  for i in "${missing[@]:1}" -1; do
    if [ "$i" = $((prev + 1)) ]; then prev=$i; continue; fi
    if [ "$start" = "$prev" ]; then list+=",$start"; else list+=",$start-$prev"; fi
    start=$i prev=$i
  done
  list=${list#,}
  echo "submit: $((shards - ${#missing[@]})) of $shards shards finished; submitting --array=$list"
  array_job=$(sbatch --parsable --array="$list${throttle:+%$throttle}" --export=ALL --comment="$tag" \
    --output="$output/logs/embed-%A_%a.log" "$@" "$here/embed.sbatch")
  array_job=${array_job%%;*}
  deps=(--dependency="afterok:$array_job" --kill-on-invalid-dep=yes)
else
  echo "submit: all $shards shards finished; submitting the merge only"
fi
merge_job=$(sbatch --parsable "${deps[@]}" --export=ALL --comment="$tag" \
  --output="$output/logs/merge-%j.log" "$here/merge.sbatch")
merge_job=${merge_job%%;*}
echo "submit: merge job $merge_job writes $output/Images_Embedded.h5${array_job:+ after array job $array_job succeeds}"
echo "ARRAY_JOB=$array_job MERGE_JOB=$merge_job"
