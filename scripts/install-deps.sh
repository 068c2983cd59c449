#!/usr/bin/env bash
# Installs what clipd needs to build and test on Debian 12: apt packages (with the non-free
# component for Debian's CUDA toolkit) and Go modules. Idempotent: a no-op when all is there.
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake pkg-config
  libhdf5-dev hdf5-tools libturbojpeg0-dev libjpeg-turbo-progs libopenblas-dev
  python3-torch python3-numpy python3-pil python3-h5py python3-yaml
  python3-regex  # tests/reference/tokenizer_ref.py: the pattern classes of CLIP's tokenizer
  clang libclang-rt-14-dev  # libFuzzer + ASan/UBSan for the C fuzz harnesses (make fuzz)
)
CUDA_PACKAGES=(nvidia-cuda-toolkit g++-11)
# The cluster test (tests/cluster/slurm.sh) starts its own one-node Slurm. Installing these
# also installs (and, under systemd, enables) the munge, slurmctld and slurmd services; the
# test uses its own config, socket and ports, not theirs. CLIP_SKIP_SLURM=1 leaves them out
# (the test then skips).
SLURM_PACKAGES=(slurm-wlm munge)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
want=("${APT_PACKAGES[@]}")
if [ "${CLIP_SKIP_CUDA_TOOLKIT:-0}" != 1 ]; then want+=("${CUDA_PACKAGES[@]}"); fi
if [ "${CLIP_SKIP_SLURM:-0}" != 1 ]; then want+=("${SLURM_PACKAGES[@]}"); fi
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ] && ! grep -q "non-free" "$src"; then
    # nvidia-cuda-toolkit lives in Debian's non-free component.
    $SUDO sed -i -E 's/^Components: main$/Components: main contrib non-free/' "$src"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if command -v go >/dev/null 2>&1 && [ -f go.mod ]; then
  go mod download
fi
echo "install-deps: ok"
