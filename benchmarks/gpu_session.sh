#!/usr/bin/env bash
# The GPU checks of issues 16 and 17 in one go, for a lent GPU machine with a time limit:
#
#   bash benchmarks/gpu_session.sh OUT_DIR [SECONDS]        (default 540 s in all)
#   STAGES="compiled mae" MAE_MINUTES=1.75 bash benchmarks/gpu_session.sh OUT_DIR 280
#   STAGES=table1 T1_ONLY="seg det_pose" T1_WORKERS=6 bash benchmarks/gpu_session.sh OUT_DIR 555
#
# 1. gpu_bench.py: the multitask network against its composition on CUDA (DLA-34 and the
#    mobile config; eager fp32, eager bf16, onnxruntime's CUDA provider where installed).
# 2. Table 1 on the GPU: the five networks at 8,000 steps on the synthetic simple scenes at
#    128 px (the CPU table's settings), one process each, side by side on the one GPU.
# 3. An MAE ViT-S/16 pretrained at 224 px on generated composites for a few minutes (at lower
#    CPU priority, beside Table 1), then `mae eval` against the baselines.
# 4. compiled: the mobile and DLA-34 networks under torch.compile on CUDA (before the trainings
#    when no Table 1 runs in the same call, else after them if time is left).
# Everything stops before SECONDS; the results, the logs and every run's metrics.jsonl end up
# in OUT_DIR/gpu_session.tar.gz (an unfinished network still brings its validation curve).
# STAGES picks the parts (default all four). Python packages the machine lacks travel as wheels
# in .whl/ (carry it): for the lent H200's Python 3.12, in the repository root here,
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl pycocotools igraph texttable
set -u
OUT_DIR=${1:?usage: gpu_session.sh OUT_DIR [SECONDS]}
BUDGET=${2:-540}
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
WORK=${WORK:-/tmp/gpu_session}
# smaller settings only to try the script on a CPU
T1_STEPS=${T1_STEPS:-8000} T1_IMAGES=${T1_IMAGES:-2000} MAE_IMAGES=${MAE_IMAGES:-4000}
MAE_BATCH=${MAE_BATCH:-256} MAE_MINUTES=${MAE_MINUTES:-3.5} MAE_EVAL=${MAE_EVAL:-60} MAE_EVAL_SECONDS=${MAE_EVAL_SECONDS:-150}
STAGES=${STAGES:-bench table1 mae compiled}  # a later call can run the stages an earlier one missed
COMPILE_SECONDS=${COMPILE_SECONDS:-120}
# 16 cores fed five networks with 2 workers each at 11-19 steps/s (2026-12-04): fewer networks
# a call, with more workers each, is how 8,000 steps fit
T1_ONLY=${T1_ONLY:-seg det seg_det det_pose seg_det_pose} T1_WORKERS=${T1_WORKERS:-2}
mkdir -p "$OUT_DIR" "$WORK/logs"
LOG="$WORK/logs/session.log"
say() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$LOG"; }

collect() {
  say "collecting"
  (cd "$WORK" && ls -d ./*.json logs t1/*/metrics.jsonl t1/*/config.yaml mae_s16/metrics.jsonl mae_s16/*.yaml \
      2>/dev/null | tar czf "$OUT_DIR/gpu_session.tar.gz" -T -)
  cp "$LOG" "$OUT_DIR/session.log"
  cp "$WORK"/*.json "$OUT_DIR/" 2>/dev/null
  return 0
}
trap collect EXIT

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$LOG" 2>&1
say "cpus $(nproc); $(python3 -c 'import torch, timm, onnxruntime as o; print(torch.__version__, timm.__version__, o.__version__, o.get_available_providers())' 2>&1)"
python3 -c "import deltalearn.cli, pycocotools, igraph, cv2" || { say "imports failed"; exit 1; }

say "data"
cat >"$WORK/make_data.py" <<'PY'
import sys
from pathlib import Path
from deltalearn.data.synth import generate_composites, generate_people
work, t1_images, mae_images = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if __name__ == "__main__":
    # the folders and seeds table1.py uses for --out WORK/t1 --scene simple --seed 0
    generate_people(work / "t1/data/train", num_images=t1_images, size=128, seed=0, scene="simple", progress=False)
    generate_people(work / "t1/data/val", num_images=200, size=128, seed=1000, scene="simple", progress=False)
    generate_composites(work / "mae_train", mae_images, size=224, seed=0, progress=False)
    generate_composites(work / "mae_eval", 100, size=224, seed=1, progress=False)
PY
python3 "$WORK/make_data.py" "$WORK" "$T1_IMAGES" "$MAE_IMAGES" >>"$LOG" 2>&1 || { say "data failed"; exit 1; }

want() { [[ " $STAGES " == *" $1 "* ]]; }

if want bench; then
  say "gpu_bench (eager, onnxruntime)"
  timeout 150 python3 benchmarks/gpu_bench.py --json "$WORK/gpu_bench.json" --runs 30 --warmup 5 \
    --paths eager_fp32 eager_bf16 eager_bf16_nchw onnxruntime_cuda >>"$WORK/logs/gpu_bench.log" 2>&1 || say "gpu_bench stopped: $?"
fi

compiled() {
  say "gpu_bench compiled (batch 1)"
  timeout "$1" python3 benchmarks/gpu_bench.py --json "$WORK/gpu_bench_compiled.json" --runs 30 --warmup 5 \
    --configs coco_person_seg_det_pose_mobile coco_person_seg_det_pose --batches 1 --paths compiled_bf16 \
    >>"$WORK/logs/gpu_bench.log" 2>&1 || say "compiled stopped: $?"
}
# compiling is CPU work: before the trainings when none run alongside, else after them
if want compiled && ! want table1; then compiled "$COMPILE_SECONDS"; fi

pids=()
if want table1; then
  say "table 1: $T1_ONLY, $T1_STEPS steps each"
  for combo in $T1_ONLY; do
    OMP_NUM_THREADS=2 python3 benchmarks/table1.py --steps "$T1_STEPS" --images "$T1_IMAGES" --scene simple \
      --out "$WORK/t1" --json "$WORK/t1_$combo.json" --only $combo -- data.workers=$T1_WORKERS >"$WORK/logs/t1_$combo.log" 2>&1 &
    pids+=($!)
  done
fi
if want mae; then
  say "mae: ViT-S/16 pretraining at 224 px, $MAE_MINUTES min"
  # beside Table 1 at lower CPU priority with 2 data workers; alone with all the cores
  if want table1; then mae_nice=10 mae_workers=2; else mae_nice=0 mae_workers=$(($(nproc) - 2)); fi
  (OMP_NUM_THREADS=2 nice -n $mae_nice python3 -m deltalearn.cli mae pretrain --data "$WORK/mae_train" --out "$WORK/mae_s16" \
     model.variant=mae_vit_small_patch16 data.image_size=224 data.crop_scale=[0.2,1.0] data.workers=$mae_workers \
     train.batch_size=$MAE_BATCH train.lr=1.5e-3 train.warmup_epochs=3 train.epochs=200 train.max_minutes=$MAE_MINUTES \
     train.val_every=0 >"$WORK/logs/mae_pretrain.log" 2>&1
   say "mae eval"
   OMP_NUM_THREADS=2 nice -n $mae_nice timeout "$MAE_EVAL_SECONDS" python3 -m deltalearn.cli mae eval \
     --weights "$WORK/mae_s16" --data "$WORK/mae_eval" --limit "$MAE_EVAL" --json "$WORK/mae_eval.json" \
     >"$WORK/logs/mae_eval.log" 2>&1) &
  pids+=($!)
fi

while [ "$(left)" -gt 45 ]; do
  running=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=$((running + 1)); done
  [ $running -eq 0 ] && break
  sleep 5
done
for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && say "stopping $pid" && pkill -TERM -P "$pid"; kill "$pid" 2>/dev/null; done
sleep 2
say "trainings done; $(left) s left"
if want table1; then
  for combo in $T1_ONLY; do
    tr "\r" "\n" <"$WORK/logs/t1_$combo.log" | grep -v -e "it/s" -e "s/it" -e "^ *$" | tail -n 6 >>"$LOG"
  done
  if want compiled && [ "$(left)" -gt 100 ]; then compiled $(($(left) - 30)); fi
fi
say "end"
