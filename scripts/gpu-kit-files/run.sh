#!/usr/bin/env bash
# Runs sge from this kit without installing anything system-wide.
#   run.sh [RESULTS_DIR=./results [STEP...]]
# Runs the named steps in the given order (default: devices validate golden bench bench-sge train
# torch bench-step torch-train), saving outputs to RESULTS_DIR, and ends with a summary line per step
# (name, exit code, seconds, ok / FAILED / timed out / skipped). Exit status 1 if any step failed or
# timed out, 2 for an unknown step name. Steps:
#   devices      sge devices                                   -> devices.txt
#   validate     sge validate --json (SGE_KIT_VALIDATE_CASES)  -> validate.json
#   golden       sge check-golden golden/*.safetensors         -> check-golden.txt
#   bench        sge bench --json (+ SGE_KIT_BENCH_ARGS)       -> bench.json
#   bench-sge    sge bench sge --json (+ SGE_KIT_BENCH_SGE_ARGS) -> bench-sge.json
#   train        a short sge train on Fashion-MNIST (SGE_KIT_TRAIN_ARGS replaces --epochs 1) -> train.txt, train.stderr, train/
#   torch        torch-sge-bench.py: PytorchInsight's SGE module on CUDA at the same shapes
#                (+ SGE_KIT_TORCH_ARGS; only where python3 has PyTorch with CUDA) -> torch-sge.txt/.json
#   bench-step   sge bench step --model small|resnet20 --batch-size 128, with --kernels (text) and --json
#                (+ SGE_KIT_BENCH_STEP_ARGS, appended: the last value of an option wins)
#                -> bench-step-small.txt/.json, bench-step-resnet20.txt/.json
#   torch-train  torch-train-bench.py: PyTorch training steps of the same models (+ SGE_KIT_TORCH_TRAIN_ARGS;
#                only where python3 has PyTorch with CUDA, or with SGE_KIT_TORCH_DEVICE=cpu where it has
#                PyTorch at all, then --device cpu) -> torch-train.txt/.json
#   tune         sge tune (+ SGE_KIT_TUNE_ARGS, e.g. --budget 300) -> tune.txt; the stored tuning is copied to
#                tuning/ (it lives in RESULTS_DIR/cache/sge/tuning, so later steps of the same run use it)
#   bench-conv   sge bench conv (+ SGE_KIT_BENCH_CONV_ARGS) -> bench-conv.txt
#   bench-step-r50   sge bench step --model resnet50 --classes 1000 --image-size 224 --batch-size 64
#                (+ SGE_KIT_R50_ARGS, appended) -> bench-step-resnet50.txt/.json
#   torch-train-r50  torch-train-bench.py --models resnet50 --batch-size 64 (+ SGE_KIT_TORCH_R50_ARGS; PyTorch
#                with CUDA, or SGE_KIT_TORCH_DEVICE=cpu) -> torch-train-r50.txt/.json
#   study        sge study --augment --epochs 15 --seeds 3 --groups 8 --no-norm-groups none on the full
#                Fashion-MNIST training set (SGE G=8 against none; SGE_KIT_STUDY_ARGS appended, e.g.
#                --groups 4,8,16); resumable: rerunning with the same RESULTS_DIR continues -> study/, study.txt
#   torch-study  torch-study.py: the same recipe trained by PyTorch, seeds 1,2,3, SGE G=8 and none
#                (+ SGE_KIT_TORCH_STUDY_ARGS; PyTorch with CUDA, or SGE_KIT_TORCH_DEVICE=cpu) -> torch-study.txt/.json
#   train-best   the >= 94.5% recipe: sge train --model resnet20 --width 32 --augment --epochs 30 on
#                Fashion-MNIST (SGE_KIT_BEST_ARGS replaces the options after --data) -> train-best.txt, train-best/
#   bench-data   sge bench data on a generated image folder (RESULTS_DIR/imagefolder, 400 JPEGs of 500x375;
#                SGE_KIT_BENCH_DATA_ARGS replaces --generate 400 --image-size 224): JPEG decode + augmentation
#                images/s per thread and in total -> bench-data.json
#   cmdbuf       probe-command-buffers (scripts/probe-command-buffers.c): host time to issue 100 small kernels
#                one by one against replaying them recorded in a cl_khr_command_buffer, at 4096 and 1M floats
#                (issue 17; says so where the driver lacks the extension) -> cmdbuf.txt
#   mpi          the kit's mpirun -np 1 sge train (a short run: SGE_KIT_TRAIN_ARGS) -> mpi.txt, mpi.stderr, mpi/
#                (the kit's Open MPI: OPAL_PREFIX is its prefix; $here/mpirun runs it by hand)
# tune, bench-conv and the steps after them run only when named. Each step's stderr goes to STEP.stderr.
# Environment: SGE_KIT_EXTRA_ICDS=1 also uses the system's ICD files (/etc/OpenCL/vendors), e.g.
# PoCL for testing the kit on a machine without a GPU; SGE_DEVICE selects the device as usual;
# SGE_KIT_SKIP lists steps to skip (comma-separated); SGE_KIT_STEP_TIMEOUT bounds each step in seconds
# (default 540; a step that runs out is reported "not finished (time limit)", and the next step runs).
# NVIDIA's driver library is looked up in the loader cache (ldconfig -p) and the usual driver folders
# (/usr/local/nvidia/lib64, /usr/lib/x86_64-linux-gnu, /usr/lib64); when found, the ICD file names
# it by absolute path, so a driver folder outside the loader's search path still works.
# The step functions run in a child bash (exported with export -f), which shellcheck cannot see.
# shellcheck disable=SC2317
set -uo pipefail
default_steps=(devices validate golden bench bench-sge train torch bench-step torch-train)
all_steps=("${default_steps[@]}" tune bench-conv bench-step-r50 torch-train-r50 study torch-study train-best bench-data cmdbuf mpi)
here=$(cd "$(dirname "$0")" && pwd)
results_arg=${1:-$here/results}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then steps=("$@"); else steps=("${default_steps[@]}"); fi
for name in "${steps[@]}"; do
  if [[ " ${all_steps[*]} " != *" $name "* ]]; then
    echo "run.sh: unknown step '$name' (steps: ${all_steps[*]})" >&2
    exit 2
  fi
done
results=$(mkdir -p "$results_arg" && cd "$results_arg" && pwd)
prefix="$here/prefix"

if [ ! -f "$prefix/.unpacked" ]; then
  mkdir -p "$prefix"
  for deb in "$here"/debs/*.deb; do dpkg-deb -x "$deb" "$prefix"; done
  touch "$prefix/.unpacked"
fi
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:$prefix/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Open MPI finds its plug-ins and help files under OPAL_PREFIX (Debian's paths relocated into the kit).
export OPAL_PREFIX="$prefix/usr"
export mpirun="$prefix/usr/bin/mpiexec.openmpi"
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
# What the steps (run in a child bash under `timeout`) need.
export here results prefix
export sge="$here/sge"
export data="$prefix/usr/share/datasets/fashion-mnist"
skip=",${SGE_KIT_SKIP:-},"
limit=${SGE_KIT_STEP_TIMEOUT:-540}

# run FILE STEP COMMAND...: COMMAND's stdout to RESULTS/FILE, its stderr appended to RESULTS/STEP.stderr.
# Returns COMMAND's exit code; a step returns its first failing command's.
run() {
  local file=$1 name=$2; shift 2
  echo "   $* > $file"
  "$@" > "$results/$file" 2>> "$results/$name.stderr"
}
torch_probe() {  # exit 0: torch with CUDA; 1: torch without CUDA; 2: no torch
  python3 -c 'import sys
try:
    import torch
except Exception:
    sys.exit(2)
sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}

step_devices() { run devices.txt devices "$sge" devices; local rc=$?; cat "$results/devices.txt"; return "$rc"; }
step_validate() { run validate.json validate "$sge" validate --cases "${SGE_KIT_VALIDATE_CASES:-50}" --json; }
step_golden() { run check-golden.txt golden "$sge" check-golden "$here"/golden/*.safetensors; }
# shellcheck disable=SC2086
step_bench() { run bench.json bench "$sge" bench --json ${SGE_KIT_BENCH_ARGS:-}; }
# shellcheck disable=SC2086
step_bench_sge() { run bench-sge.json bench-sge "$sge" bench sge --json ${SGE_KIT_BENCH_SGE_ARGS:-}; }
# shellcheck disable=SC2086
step_train() { run train.txt train "$sge" train --data "$data" --out "$results/train" ${SGE_KIT_TRAIN_ARGS:---epochs 1}; }
step_torch() {
  # shellcheck disable=SC2086
  run torch-sge.txt torch python3 "$here/torch-sge-bench.py" --json "$results/torch-sge.json" ${SGE_KIT_TORCH_ARGS:-}
  local rc=$?
  cat "$results/torch-sge.txt"
  return "$rc"
}
step_bench_step() {
  local rc=0 r model
  for model in small resnet20; do
    # shellcheck disable=SC2086
    run "bench-step-$model.txt" bench-step "$sge" bench step --model "$model" --batch-size 128 --kernels ${SGE_KIT_BENCH_STEP_ARGS:-}
    r=$?; [ "$rc" -eq 0 ] && rc=$r
    cat "$results/bench-step-$model.txt"
    # shellcheck disable=SC2086
    run "bench-step-$model.json" bench-step "$sge" bench step --model "$model" --batch-size 128 --json ${SGE_KIT_BENCH_STEP_ARGS:-}
    r=$?; [ "$rc" -eq 0 ] && rc=$r
  done
  return "$rc"
}
step_torch_train() {
  local device=()
  [ "${SGE_KIT_TORCH_DEVICE:-}" = cpu ] && device=(--device cpu)
  # shellcheck disable=SC2086
  run torch-train.txt torch-train python3 "$here/torch-train-bench.py" "${device[@]}" --json "$results/torch-train.json" ${SGE_KIT_TORCH_TRAIN_ARGS:-}
  local rc=$?
  cat "$results/torch-train.txt"
  return "$rc"
}
step_tune() {
  # shellcheck disable=SC2086
  run tune.txt tune "$sge" tune ${SGE_KIT_TUNE_ARGS:-}
  local rc=$?
  cat "$results/tune.txt"
  if [ -d "$XDG_CACHE_HOME/sge/tuning" ]; then
    mkdir -p "$results/tuning" && cp -r "$XDG_CACHE_HOME/sge/tuning/." "$results/tuning/"
    echo "   stored tuning copied to $results/tuning: $(cd "$results/tuning" && echo *)"
  else
    echo "   no stored tuning in $XDG_CACHE_HOME/sge/tuning"
  fi
  return "$rc"
}
# shellcheck disable=SC2086
step_mpi() { run mpi.txt mpi "$mpirun" --allow-run-as-root -np 1 "$sge" train --data "$data" --out "$results/mpi" ${SGE_KIT_TRAIN_ARGS:---epochs 1}; }
# shellcheck disable=SC2086
step_bench_conv() { run bench-conv.txt bench-conv "$sge" bench conv ${SGE_KIT_BENCH_CONV_ARGS:-}; local rc=$?; cat "$results/bench-conv.txt"; return "$rc"; }
step_bench_step_r50() {
  local rc=0 r
  # shellcheck disable=SC2086
  run bench-step-resnet50.txt bench-step-r50 "$sge" bench step --model resnet50 --classes 1000 --image-size 224 --batch-size 64 \
    --steps 5 --warmup 2 --kernels ${SGE_KIT_R50_ARGS:-}
  rc=$?
  cat "$results/bench-step-resnet50.txt"
  # shellcheck disable=SC2086
  run bench-step-resnet50.json bench-step-r50 "$sge" bench step --model resnet50 --classes 1000 --image-size 224 --batch-size 64 \
    --steps 5 --warmup 2 --json ${SGE_KIT_R50_ARGS:-}
  r=$?; [ "$rc" -eq 0 ] && rc=$r
  return "$rc"
}
step_torch_train_r50() {
  local device=()
  [ "${SGE_KIT_TORCH_DEVICE:-}" = cpu ] && device=(--device cpu)
  # shellcheck disable=SC2086
  run torch-train-r50.txt torch-train-r50 python3 "$here/torch-train-bench.py" "${device[@]}" --models resnet50 --batch-size 64 \
    --steps 10 --warmup 3 --json "$results/torch-train-r50.json" ${SGE_KIT_TORCH_R50_ARGS:-}
  local rc=$?
  cat "$results/torch-train-r50.txt"
  return "$rc"
}
step_study() {
  # shellcheck disable=SC2086
  run study.txt study "$sge" study --data "$data" --out "$results/study" --augment --epochs 15 --seeds 3 --groups 8 \
    --no-norm-groups none ${SGE_KIT_STUDY_ARGS:-}
  local rc=$?
  tail -n 20 "$results/study.txt"
  return "$rc"
}
step_torch_study() {
  local device=()
  [ "${SGE_KIT_TORCH_DEVICE:-}" = cpu ] && device=(--device cpu)
  # shellcheck disable=SC2086
  run torch-study.txt torch-study python3 "$here/torch-study.py" "${device[@]}" --data "$data" --epochs 15 --seeds 1,2,3 \
    --variants sge,none --augment --json "$results/torch-study.json" ${SGE_KIT_TORCH_STUDY_ARGS:-}
  local rc=$?
  cat "$results/torch-study.txt"
  return "$rc"
}
# shellcheck disable=SC2086
step_train_best() {
  run train-best.txt train-best "$sge" train --data "$data" --out "$results/train-best" --overwrite \
    ${SGE_KIT_BEST_ARGS:---model resnet20 --width 32 --augment --epochs 30}
  local rc=$?
  tail -n 5 "$results/train-best.stderr"
  return "$rc"
}
# shellcheck disable=SC2086
step_bench_data() {
  rm -rf "$results/imagefolder"
  run bench-data.json bench-data "$sge" bench data --data "$results/imagefolder" --json ${SGE_KIT_BENCH_DATA_ARGS:---generate 400 --image-size 224}
  local rc=$?; cat "$results/bench-data.json"; echo; return "$rc"
}
step_cmdbuf() {
  run cmdbuf.txt cmdbuf "$here/probe-command-buffers" 100 4096 20 \
    && "$here/probe-command-buffers" 100 1048576 10 >> "$results/cmdbuf.txt" 2>> "$results/cmdbuf.stderr"
  local rc=$?
  cat "$results/cmdbuf.txt"
  return "$rc"
}
export -f run step_devices step_validate step_golden step_bench step_bench_sge step_train step_torch step_bench_step \
  step_torch_train step_tune step_bench_conv step_bench_step_r50 step_torch_train_r50 step_study step_torch_study step_train_best \
  step_bench_data step_cmdbuf step_mpi

# Why a step does not run here (empty: it runs).
skip_reason() {
  if [[ $skip == *",$1,"* ]]; then echo "skipped (SGE_KIT_SKIP)"; return; fi
  case $1 in
    torch)
      torch_probe || echo "skipped (no python3 with PyTorch and a CUDA device)" ;;
    torch-train|torch-train-r50|torch-study)
      torch_probe; local probe=$?
      if [ "${SGE_KIT_TORCH_DEVICE:-}" = cpu ]; then
        [ $probe -eq 2 ] && echo "skipped (SGE_KIT_TORCH_DEVICE=cpu, but python3 has no PyTorch)"
      elif [ $probe -ne 0 ]; then
        echo "skipped (no PyTorch with CUDA)"
      fi ;;
  esac
}

status=0
summary=()
group=
# Interrupted (Ctrl-C, or killed by whatever runs the kit): end the running step's processes too.
trap 'echo "run.sh: interrupted"; [ -n "$group" ] && kill -TERM -- "-$group" 2>/dev/null; exit 130' INT TERM
for name in "${steps[@]}"; do
  reason=$(skip_reason "$name")
  if [ -n "$reason" ]; then
    echo "== $name: $reason"
    summary+=("$(printf '%-16s %5s %6s s  %s' "$name" - 0 "$reason")")
    continue
  fi
  echo "== $name (time limit ${limit} s)"
  start=$SECONDS
  : > "$results/$name.stderr"
  # timeout runs the step in a process group of its own (its pid) and signals the whole group; what
  # survives it (a process that ignores SIGTERM once the step's bash is gone) is killed afterwards.
  timeout -k 10 "$limit" bash -c "step_${name//-/_}" &
  group=$!
  wait "$group"
  rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then kill -KILL -- "-$group" 2>/dev/null; fi
  secs=$((SECONDS - start))
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    state="timed out"
    echo "   $name: not finished (time limit $limit s), exit $rc after $secs s"
    status=1
  elif [ $rc -eq 0 ]; then
    state=ok
    echo "   $name: exit 0 in $secs s"
  else
    state=FAILED
    echo "   $name: FAILED, exit $rc in $secs s (stderr: $results/$name.stderr)"
    status=1
  fi
  summary+=("$(printf '%-16s %5s %6s s  %s' "$name" "$rc" "$secs" "$state")")
done
for pair in golden:check-golden.txt train:train.stderr; do
  f=${pair#*:}
  if [[ " ${steps[*]} " == *" ${pair%%:*} "* ]] && [ -s "$results/$f" ]; then echo "--- $f (end)"; tail -n 12 "$results/$f"; fi
done
echo "== summary (step, exit, seconds, result)"
printf '%s\n' "${summary[@]}"
echo "results in $results (exit $status)"
exit $status
