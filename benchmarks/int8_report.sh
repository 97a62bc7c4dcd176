#!/usr/bin/env bash
# INT8's accuracy cost per head and an evaluation report, on a briefly trained seg+det+pose
# network (ResNet-18, 128 px, 30 epochs on 600 generated images; 100 held-out images).
# Writes benchmarks/results/int8_accuracy.json and benchmarks/results/report_example/.
# Usage: bash benchmarks/int8_report.sh [WORK_DIR]   (about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-runs/int8}"
results=benchmarks/results
[ -d "$work/train" ] || deltalearn mcn synth --out "$work/train" --images 600 --size 128 --seed 11
[ -d "$work/val" ] || deltalearn mcn synth --out "$work/val" --images 100 --size 128 --seed 1011
[ -f "$work/run/last.safetensors" ] || deltalearn mcn train --config synth_seg_det_pose --data "$work/train" \
    --val-data "$work/val" --out "$work/run" data.image_size=128 train.epochs=30 train.val_every=10 train.max_minutes=0
deltalearn mcn export --weights "$work/run" --out "$work/int8.onnx" --int8 --calib "$work/train/images" \
    --val "$work/val"
cp "$work/int8.accuracy.json" "$results/int8_accuracy.json"
rm -rf "$results/report_example"
deltalearn mcn eval --weights "$work/run" --data "$work/val" --precision fp32 --report "$results/report_example" \
    --gallery 3
