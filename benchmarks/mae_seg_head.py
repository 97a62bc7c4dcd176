"""Segmentation head on a pretrained MAE encoder: trained within a CPU time budget, scored by IoU.

    python benchmarks/mae_seg_head.py --weights RUN/run --train RUN/train \\
        --test data/mae_test --images 5000 --minutes 2.5 --out seg_head.json [key=value ...]

1. ``train_seg_head`` trains a head on the first ``--images`` images of ``--train`` with their
   ground-truth masks (``TRAIN/masks``), or with the pseudo-labels of ``--pseudo DIR``
   (``DIR/masks`` when it exists, e.g. the output of ``mae segment``): self-training.
   A few timed steps size ``train.epochs`` to ``--fill`` times what fits ``--minutes``;
   ``train.max_minutes`` stops it and the learning-rate schedule follows the clock.
2. On ``--test`` (images + ground-truth masks) it reports the mean over images of IoU at
   probability 0.5 (an image where prediction and truth are both empty counts 1), next to
   the all-foreground and all-background masks.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

# Waiting threads spin by default and starve their partner on a shared CPU (see mae_pretrain_cpu.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deltalearn.config import load_config, to_dict  # noqa: E402
from deltalearn.data.io import atomic_write_text, find_images, image_root, load_rgb, mask_root, read_mask  # noqa: E402
from deltalearn.engine.precision import autocast, resolve_precision  # noqa: E402
from deltalearn.engine.trainer import build_optimizer  # noqa: E402
from deltalearn.mae.model import MaskedAutoencoder  # noqa: E402
from deltalearn.mae.pretrain import load_trained_mae  # noqa: E402
from deltalearn.mae.seg_head import (  # noqa: E402
    SegHeadConfig,
    load_seg_head,
    predict_foreground,
    seg_param_groups,
    segmentation_loss,
    train_seg_head,
    trainable_segmenter,
)

CALIBRATION_STEPS = (2, 5)  # untimed warm-up steps, timed steps


def seconds_per_step(mae: MaskedAutoencoder, config: SegHeadConfig) -> float:
    """Wall time of one training step (forward, backward, AdamW) at the configured batch size."""
    model = trainable_segmenter(mae, config).train()
    precision = resolve_precision(config.train.precision, "cpu", model)
    optimizer = build_optimizer(seg_param_groups(model, config.train), config.train)
    loss_fn = segmentation_loss(config.train.dice_weight)
    height, width = mae.config.image_hw
    batch = (torch.randn(config.train.batch_size, 3, height, width),
             torch.rand(config.train.batch_size, 1, height, width).round())
    warmup, timed = CALIBRATION_STEPS
    for step in range(warmup + timed):
        if step == warmup:
            start = time.perf_counter()
        with autocast(precision):
            loss = loss_fn(model, batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / timed


def mean_iou(probs: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """Mean over images of |P & G| / |P | G| with P = prob >= 0.5; both empty counts 1."""
    scores = []
    for prob, mask in zip(probs, masks):
        pred = prob >= 0.5
        union = np.logical_or(pred, mask).sum()
        scores.append(1.0 if union == 0 else np.logical_and(pred, mask).sum() / union)
    return float(np.mean(scores))


def load_test(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images [H, W, 3] uint8 and their ground-truth masks [H, W] bool (same stems)."""
    images = find_images(image_root(folder))
    masks = {p.stem: p for p in find_images(mask_root(folder))}
    return [load_rgb(p) for p in images], [read_mask(masks[p.stem]) for p in images]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="MAE run folder or file")
    parser.add_argument("--train", type=Path, required=True, help="training images (+ masks/)")
    parser.add_argument("--pseudo", type=Path, default=None, help="pseudo-label masks instead of TRAIN/masks")
    parser.add_argument("--test", type=Path, required=True, help="test images + ground-truth masks")
    parser.add_argument("--images", type=int, default=5000, help="first N training pairs (data.max_images)")
    parser.add_argument("--minutes", type=float, default=3.0, help="training wall-clock budget")
    parser.add_argument("--epochs", type=int, default=0, help="fixed schedule length instead of sizing it to the budget")
    parser.add_argument("--fill", type=float, default=1.1,
                        help="budget share the schedule is planned for at the calibrated speed (> 1: the clock ends it)")
    parser.add_argument("--work", type=Path, default=Path("bench_seg_head"), help="run folder (emptied first)")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON to this file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="SegHeadConfig overrides")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    config = load_config(SegHeadConfig, None, args.overrides)
    config.data.max_images, config.train.max_minutes = args.images, args.minutes
    mae = load_trained_mae(args.weights)
    step_s = seconds_per_step(mae, config)
    steps_per_epoch = math.ceil(args.images / config.train.batch_size)
    config.train.epochs = args.epochs or max(1, int(args.minutes * 60 * args.fill / step_s / steps_per_epoch))
    config.train.warmup_epochs = min(config.train.warmup_epochs, config.train.epochs / 10)
    shutil.rmtree(args.work, ignore_errors=True)

    start = time.perf_counter()
    masks = args.pseudo if args.pseudo is not None else args.train
    result = train_seg_head(mae, args.train, masks, args.work, config, mae_source=str(args.weights))
    minutes = (time.perf_counter() - start) / 60

    model = load_seg_head(args.work, mae)
    images, truth = load_test(args.test)
    start = time.perf_counter()
    probs = predict_foreground(model, images)
    predict_ms = (time.perf_counter() - start) * 1000 / len(images)
    summary = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "labels": "pseudo" if args.pseudo is not None else "ground_truth",
        "masks": str(mask_root(masks)),
        "train_pairs": result["images"],
        "skipped": result["skipped"],
        "test_images": len(images),
        "test_iou": round(mean_iou(probs, truth), 4),
        "full_mask_iou": round(mean_iou([np.ones(t.shape) for t in truth], truth), 4),
        "empty_mask_iou": round(mean_iou([np.zeros(t.shape) for t in truth], truth), 4),
        "budget_minutes": args.minutes,
        "train_minutes": round(minutes, 2),
        "seconds_per_step_estimate": round(step_s, 4),
        "epochs_planned": config.train.epochs,
        "epochs_done": result["epoch"],
        "steps": result["step"],
        "stopped_by_time": result["stopped_early"],
        "train_loss": round(result.get("train_loss", float("nan")), 4),
        "predict_ms_per_image": round(predict_ms, 3),
        "torch_threads": torch.get_num_threads(),
        "config": to_dict(config),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
