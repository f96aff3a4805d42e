#!/usr/bin/env bash
# Runs sge from this kit without installing anything system-wide.
#   run.sh [RESULTS_DIR=./results]
# Environment: SGE_KIT_EXTRA_ICDS=1 also uses the system's ICD files (/etc/OpenCL/vendors), e.g.
# PoCL for testing the kit on a machine without a GPU; SGE_DEVICE selects the device as usual;
# Where python3 has PyTorch with CUDA, torch-sge-bench.py times PytorchInsight's SGE module at the
# same shapes (torch-sge.txt/.json; SGE_KIT_TORCH_ARGS passes options).
# SGE_KIT_TRAIN_ARGS overrides the short training run's options (SGE_KIT_VALIDATE_CASES,
# SGE_KIT_BENCH_ARGS and SGE_KIT_BENCH_SGE_ARGS likewise); SGE_KIT_SKIP lists steps to skip
# (devices,validate,golden,bench,bench-sge,train,torch); SGE_KIT_STEP_TIMEOUT bounds each step in seconds
# (default 900; a step that runs out counts as failed, exit 124).
# NVIDIA's driver library is looked up in the loader cache (ldconfig -p) and the usual driver folders
# (/usr/local/nvidia/lib64, /usr/lib/x86_64-linux-gnu, /usr/lib64); when found, the ICD file names
# it by absolute path, so a driver folder outside the loader's search path still works.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
results=$(mkdir -p "${1:-$here/results}" && cd "${1:-$here/results}" && pwd)
prefix="$here/prefix"

if [ ! -f "$prefix/.unpacked" ]; then
  mkdir -p "$prefix"
  for deb in "$here"/debs/*.deb; do dpkg-deb -x "$deb" "$prefix"; done
  touch "$prefix/.unpacked"
fi
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:$prefix/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
vendors="$results/vendors"
mkdir -p "$vendors"
cp "$here"/vendors/*.icd "$vendors/"
nvlib=$( (ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1 /{print $NF; exit}') || true)
if [ -z "$nvlib" ]; then
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib; do
    if [ -e "$d/libnvidia-opencl.so.1" ]; then nvlib="$d/libnvidia-opencl.so.1"; break; fi
  done
fi
if [ -n "$nvlib" ]; then
  echo "$nvlib" > "$vendors/nvidia.icd"
  echo "NVIDIA OpenCL driver: $nvlib"
else
  echo "NVIDIA OpenCL driver: libnvidia-opencl.so.1 not found (loader cache, /usr/local/nvidia/lib64, /usr/lib/x86_64-linux-gnu, /usr/lib64); only other ICDs can be used"
fi
if [ "${SGE_KIT_EXTRA_ICDS:-0}" = 1 ] && [ -d /etc/OpenCL/vendors ]; then cp /etc/OpenCL/vendors/*.icd "$vendors/" 2>/dev/null || true; fi
export OCL_ICD_VENDORS="$vendors"
export XDG_CACHE_HOME="$results/cache"
sge="$here/sge"
skip=",${SGE_KIT_SKIP:-},"
status=0
step() {  # step NAME OUTFILE COMMAND...
  local name=$1 file=$2; shift 2
  if [[ $skip == *",$name,"* ]]; then echo "== $name: skipped"; return; fi
  echo "== $name: $*"
  local start=$SECONDS
  timeout "${SGE_KIT_STEP_TIMEOUT:-900}" "$@" > "$results/$file" 2> "$results/$name.stderr"
  local rc=$?
  echo "   exit $rc in $((SECONDS - start)) s -> $results/$file"
  [ $rc -eq 0 ] || status=1
}

step devices devices.txt "$sge" devices
cat "$results/devices.txt"
step validate validate.json "$sge" validate --cases "${SGE_KIT_VALIDATE_CASES:-50}" --json
step golden check-golden.txt "$sge" check-golden "$here"/golden/*.safetensors
# shellcheck disable=SC2086
step bench bench.json "$sge" bench --json ${SGE_KIT_BENCH_ARGS:-}
# shellcheck disable=SC2086
step bench-sge bench-sge.json "$sge" bench sge --json ${SGE_KIT_BENCH_SGE_ARGS:-}
data="$prefix/usr/share/datasets/fashion-mnist"
# shellcheck disable=SC2086
step train train.txt "$sge" train --data "$data" --out "$results/train" ${SGE_KIT_TRAIN_ARGS:---epochs 1}
if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  # shellcheck disable=SC2086
  step torch torch-sge.txt python3 "$here/torch-sge-bench.py" --json "$results/torch-sge.json" ${SGE_KIT_TORCH_ARGS:-}
  [ -s "$results/torch-sge.txt" ] && cat "$results/torch-sge.txt"
else
  echo "== torch: skipped (no python3 with PyTorch and a CUDA device)"
fi
for f in check-golden.txt train.stderr; do [ -s "$results/$f" ] && { echo "--- $f (end)"; tail -n 12 "$results/$f"; }; done
echo "results in $results (exit $status)"
exit $status
