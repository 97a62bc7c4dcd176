"""MAE pretraining on CPU within a time budget, scored against the trivial baseline.

    python benchmarks/mae_pretrain_cpu.py --out mae_pretrain_cpu.json --figure docs/images/mae_reconstructions.png

1. ``mae synth`` writes the training images (seed 0) and held-out images (seed 1).
2. ``mae_vit_cpu_patch8`` is pretrained with ``configs/mae/synth_cpu.yaml`` (plus any
   ``key=value`` overrides) for at most ``--minutes`` of wall-clock time
   (``train.max_minutes``). A few timed steps estimate the step time, and ``train.epochs``
   is set to ``--fill`` times what fits the budget at that speed; with a time budget the
   learning-rate schedule follows the clock (``train.schedule_by_clock``), so warm-up and cosine
   decay end at the deadline however fast the shared machine turns out to be.
3. On the held-out images, with the same random masks (75 %), it reports the MAE loss of
   the removed patches and that of the trivial baseline (every removed patch predicted
   as the mean colour of the image's visible pixels), in the training loss's units
   (ImageNet-normalised pixels) and as MSE of [0, 1] pixels, and draws a reconstruction
   figure of the first held-out images.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

# Threads that wait for each other spin by default; on a CPU shared with other jobs a spinning
# thread takes the core its partner needs, and two threads run many times slower than one.
# Set before torch (and its OpenMP runtime) loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from timm.data.constants import IMAGENET_DEFAULT_STD

from deltalearn.config import load_config
from deltalearn.engine.precision import Precision, autocast, resolve_precision
from deltalearn.mae.config import MAEPretrainConfig
from deltalearn.data.io import find_images
from deltalearn.data.synth import generate_composites
from deltalearn.mae.data import ImageFolder, eval_transform
from deltalearn.mae.model import MaskedAutoencoder, masked_mean
from deltalearn.mae.pretrain import (
    build_model,
    heldout_losses,
    load_images,
    load_trained_mae,
    pretrain,
    trivial_prediction,
)
from deltalearn.mae.reconstruct import reconstruct, reconstruction_figure
from deltalearn.viz.draw import save_png

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION_STEPS = (3, 8)  # untimed warm-up steps, timed steps


def synth(folder: Path, images: int, seed: int) -> float | None:
    """Generate ``images`` composites into ``folder`` unless they are there; images/s or None."""
    if (folder / "images").is_dir() and len(find_images(folder / "images")) == images:
        return None
    stats = generate_composites(folder, num_images=images, size=64, seed=seed, progress=False)
    return stats["images_per_s"]


def seconds_per_step(config: MAEPretrainConfig) -> float:
    """Wall time of one training step (forward, backward, AdamW) at the configured batch size."""
    precision = resolve_precision(config.train.precision)
    model = build_model(config).to(precision.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = config.data.image_size
    images = torch.randn(config.train.batch_size, 3, size, size, device=precision.device)
    warmup, timed = CALIBRATION_STEPS
    for step in range(warmup + timed):
        if step == warmup:
            start = time.perf_counter()
        with autocast(precision):
            loss, _, _ = model(images, mask_ratio=config.model.mask_ratio)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / timed


def pixel_losses(model: MaskedAutoencoder, images: torch.Tensor, mask_ratio: float, precision: Precision,
                 seed: int = 0) -> dict[str, float]:
    """MSE of [0, 1] pixels on the removed patches, MAE and trivial baseline, same masks as heldout_losses."""
    noise = torch.rand(images.shape[0], model.num_patches, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad(), autocast(precision):
        out = model.patch_errors(images, noise=noise, mask_ratio=mask_ratio)
    target = model.patchify(images).float()  # [N, L, p*p*3], normalised pixels, channel last
    std = torch.tensor(IMAGENET_DEFAULT_STD).repeat(target.shape[-1] // 3)  # [p*p*3]
    baseline = trivial_prediction(images, out.mask, model.config.patch_size)
    return {
        name: float(masked_mean((((pred.float() - target) * std) ** 2).mean(-1), out.mask))
        for name, pred in (("pixel_mse", out.pred), ("pixel_baseline_mse", baseline))
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="pretraining wall-clock budget")
    parser.add_argument("--epochs", type=int, default=0, help="fixed schedule length instead of sizing it to the budget")
    parser.add_argument("--fill", type=float, default=1.25,
                        help="budget share the schedule is planned for at the calibrated speed (> 1: the clock ends it)")
    parser.add_argument("--train-images", type=int, default=20000, help="generated training images (seed 0)")
    parser.add_argument("--val-images", type=int, default=1000, help="generated held-out images (seed 1)")
    parser.add_argument("--work", type=Path, default=Path("bench_mae"), help="folder for data and the run")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/mae/synth_cpu.yaml")
    parser.add_argument("--figure", type=Path, default=None, help="reconstruction figure of held-out images (PNG)")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON to this file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    train_dir, val_dir, run_dir = args.work / "train", args.work / "heldout", args.work / "run"
    synth_speed = synth(train_dir, args.train_images, seed=0)
    synth(val_dir, args.val_images, seed=1)

    config = load_config(MAEPretrainConfig, args.config, args.overrides)
    step_s = seconds_per_step(config)
    steps_per_epoch = math.ceil(args.train_images / config.train.batch_size)
    epochs = args.epochs or max(1, int(args.minutes * 60 * args.fill / step_s / steps_per_epoch))
    config.train.epochs, config.train.max_minutes, config.train.val_every = epochs, args.minutes, 0
    config.train.warmup_epochs = min(config.train.warmup_epochs, epochs / 10)
    if run_dir.exists():
        for old in run_dir.glob("*"):
            if old.is_file():
                old.unlink()
    start = time.perf_counter()
    result = pretrain(config, train_dir, run_dir)
    minutes = (time.perf_counter() - start) / 60

    model = load_trained_mae(run_dir)
    precision = resolve_precision(config.train.precision)
    heldout = load_images(ImageFolder(val_dir / "images", eval_transform((64, 64))))
    losses = heldout_losses(model, heldout, config.model.mask_ratio, precision)
    pixels = pixel_losses(model, heldout, config.model.mask_ratio, precision)
    if args.figure is not None:
        recs = reconstruct(model, heldout[:6], [str(i) for i in range(6)], config.model.mask_ratio,
                           torch.Generator().manual_seed(0))
        save_png(reconstruction_figure(recs, config.model.mask_ratio), args.figure)
    summary = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "train_images": args.train_images,
        "heldout_images": args.val_images,
        "synth_images_per_s": synth_speed,
        "budget_minutes": args.minutes,
        "pretrain_minutes": round(minutes, 2),
        "seconds_per_step_estimate": round(step_s, 4),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "epochs_planned": epochs,
        "epochs_done": result["epoch"],
        "steps": result["step"],
        "stopped_by_time": result["stopped_early"],
        "train_images_per_s": round(result["step"] * config.train.batch_size / (minutes * 60), 1),
        "batch_size": config.train.batch_size,
        "lr": result["lr"],
        "precision": precision.name,
        "mask_ratio": config.model.mask_ratio,
        "mae_loss": round(losses["loss"], 5),
        "baseline_loss": round(losses["baseline_loss"], 5),
        "mae_pixel_mse": round(pixels["pixel_mse"], 5),
        "baseline_pixel_mse": round(pixels["pixel_baseline_mse"], 5),
        "improvement": round(1 - losses["loss"] / losses["baseline_loss"], 4),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
