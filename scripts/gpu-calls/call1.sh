#!/usr/bin/env bash
# Device call 1 of a 15-minute GPU session (issue 21; docs/performance/nvidia-h200.md): the timed work, with
# nothing else on the GPU: training steps sge vs PyTorch (small, ResNet-20, SGE-ResNet-50), the SGE kernels
# (register, local and streaming paths), the conv paths; conv choices are timed and logged (SGE_VERBOSE=1).
# Run from the repository root on the device machine, with the kit as .gpu/kit.txz (`make kit`, then
# `tar -cJf .gpu/kit.txz gpu-kit`; carry [".gpu/kit.txz"]; command: bash scripts/gpu-calls/call1.sh).
# Tested against PoCL with: OUT=/tmp/o SGE_KIT_EXTRA_ICDS=1 A_STEPS="devices golden" bash call1.sh
# Results in /tmp/R (kept for call 2 on the same machine); packed into $OUT/a.txz every 40 s and at the end.
set -u
export PYTHONUNBUFFERED=1
[ -x /tmp/gpu-kit/sge ] || tar -xJf .gpu/kit.txz -C /tmp || exit 1
R=/tmp/R; mkdir -p $R
pack() { tar -cJf $OUT/a.tmp --exclude=R/cache/sge/programs --exclude=R/cache/pocl -C /tmp R 2>/dev/null && mv $OUT/a.tmp $OUT/a.txz; }
( while sleep 40; do pack; done ) & PACKER=$!
{ nvidia-smi; nproc; free -g; python3 -c 'import torch; print(torch.__version__, torch.backends.cudnn.version())'; } > $R/machine.txt 2>&1
export SGE_VERBOSE=1 SGE_KIT_VALIDATE_CASES=20 SGE_KIT_STEP_TIMEOUT=${STEP_LIMIT:-170}
export SGE_KIT_BENCH_SGE_ARGS="--shapes 64,256,56,56;64,512,28,28;64,1024,14,14;64,2048,7,7;8,256,56,56;8,512,28,28;8,1024,14,14;8,2048,7,7 --path automatic,local,streaming --repeats 11 --warmup 3"
export SGE_KIT_TORCH_R50_ARGS="--modes eager --precision fp32,default"
timeout -k 5 ${A_LIMIT:-330} /tmp/gpu-kit/run.sh $R ${A_STEPS:-devices validate golden bench-step torch-train cmdbuf bench-step-r50 torch-train-r50 bench-sge bench-conv} 2>&1 | tee $R/run-a.txt
# The small model's and ResNet-20's 3x3 shapes: every backward plan and the chosen path.
mkdir -p $R/conv2 && ln -sfn $R/cache $R/conv2/cache
SGE_KIT_BENCH_CONV_ARGS="--case 16,16,3 --case 32,32,3 --case 64,64,3 --batch 128 --size 28 ${CONV_EXTRA:-}" SGE_KIT_STEP_TIMEOUT=50 \
  /tmp/gpu-kit/run.sh $R/conv2 bench-conv 2>&1 | tail -40 | tee -a $R/run-a.txt
kill $PACKER 2>/dev/null; pack; ls -la $OUT; echo "call 1 done in $SECONDS s"
