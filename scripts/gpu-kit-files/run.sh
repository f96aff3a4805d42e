#!/usr/bin/env bash
# Runs sge from this kit without installing anything system-wide.
#   run.sh [RESULTS_DIR=./results]
# Environment: SGE_KIT_EXTRA_ICDS=1 also uses the system's ICD files (/etc/OpenCL/vendors), e.g.
# PoCL for testing the kit on a machine without a GPU; SGE_DEVICE selects the device as usual;
# SGE_KIT_TRAIN_ARGS overrides the short training run's options (SGE_KIT_VALIDATE_CASES and
# SGE_KIT_BENCH_ARGS likewise); SGE_KIT_SKIP lists steps to skip
# (devices,validate,golden,bench,train).
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
  "$@" > "$results/$file" 2> "$results/$name.stderr"
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
data="$prefix/usr/share/datasets/fashion-mnist"
# shellcheck disable=SC2086
step train train.txt "$sge" train --data "$data" --out "$results/train" ${SGE_KIT_TRAIN_ARGS:---epochs 1}
echo "results in $results (exit $status)"
exit $status
