#!/usr/bin/env bash
# Device call 2 of a GPU session, issued at once after call 1 so the machine is still warm (accuracy, not
# timing): the 15-epoch study (sge SGE G=8 vs none, seeds 1-3, one `sge study --seed-list S` per seed) and
# PyTorch's SGE runs (seeds 1-3) side by side, then the >= 94.5% recipe (ResNet-20, crop+flip) for the
# epochs the time left allows. Locally afterwards: join the three study.jsonl files (their keys name the
# kit's data folder) and run `sge study` on them to write study.md and study.png.
#   bash scripts/gpu-calls/call2.sh SECONDS   (what this call may use in all: budget_left_s less ~45)
set -u
export PYTHONUNBUFFERED=1
D=${1:-300}
[ -x /tmp/gpu-kit/sge ] || tar -xJf .gpu/kit.txz -C /tmp || exit 1
B=/tmp/RB; mkdir -p $B
pack() { tar -cJf $OUT/b.tmp --exclude='*/cache/sge/programs' --exclude='*/cache/pocl' -C /tmp RB 2>/dev/null && mv $OUT/b.tmp $OUT/b.txz; }
( while sleep 30; do pack; done ) & PACKER=$!
for d in s1 s2 s3 t1 t2 t3 best; do mkdir -p $B/$d; [ -d /tmp/R/cache ] && cp -r /tmp/R/cache $B/$d/; done
lim=$((D - 25)); pids=()
for s in 1 2 3; do
  SGE_KIT_STEP_TIMEOUT=$lim SGE_KIT_STUDY_ARGS="--seed-list $s ${STUDY_EXTRA:-}" /tmp/gpu-kit/run.sh $B/s$s study > $B/s$s.log 2>&1 & pids+=($!)
  SGE_KIT_STEP_TIMEOUT=$lim SGE_KIT_TORCH_STUDY_ARGS="--seeds $s --variants sge ${TORCH_STUDY_EXTRA:-}" /tmp/gpu-kit/run.sh $B/t$s torch-study > $B/t$s.log 2>&1 & pids+=($!)
done
wait "${pids[@]}"
left=$((D - SECONDS - 30)); echo "study done at $SECONDS s; $left s left for train-best"
if [ $left -gt 60 ]; then
  ep=$(( (left - 25) / 7 )); [ $ep -gt 30 ] && ep=30
  SGE_KIT_STEP_TIMEOUT=$left SGE_KIT_BEST_ARGS="--model resnet20 --augment --epochs $ep ${BEST_EXTRA:-}" /tmp/gpu-kit/run.sh $B/best train-best > $B/best.log 2>&1
fi
kill $PACKER 2>/dev/null; pack
tail -n 3 $B/*.log; grep -h 'test accuracy' $B/s*/study.stderr | tail -8; cat $B/t*/torch-study.txt | tail -12; ls -la $OUT; echo "call 2 done in $SECONDS s"
