"""One network from data that each label only some tasks (issue 14's experiment).

Synthetic simple scenes, the same number of steps for every row, one held-out set labelled
for every task. Rows:

  all_labels      (a) 2,000 images with every label
  split           (b) the same images: 1,000 labelled det + pose only, 1,000 seg only
  split_naive     (c) split (b) with the missing labels taken as negatives: the seg-only
                  images teach detection and pose "no objects here", the det + pose images
                  teach segmentation "all background"
  all_uncertainty (a) with loss.weighting=uncertainty
  split_uncertainty (b) with loss.weighting=uncertainty
  only_det, only_seg, only_det_pose   the single-task networks on all 2,000 images
  grow_base       seg + det on all 2,000 images, no pose
  grow_naive      grow_base + pose, trained on the det + pose half's keypoints only (every
                  parameter trains; nothing holds seg and det in place)
  grow_frozen     the same with backbone, neck and the seg and det heads frozen
  grow_lwf        grow_naive with Learning without Forgetting (loss.distill=1): grow_base,
                  frozen, teaches seg and det on the pose images while everything trains

Each row writes its run under --out and its held-out metrics into --json at once (atomic),
so a stopped run resumes where it was: rows already in the JSON are skipped.

    python benchmarks/partial_labels.py --epochs 5 --json benchmarks/results/partial_labels.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deltalearn.bench import cpu_model
from deltalearn.config import PACKAGED_CONFIGS, load_config
from deltalearn.data.io import atomic_write_text
from deltalearn.data.sample import Sample
from deltalearn.data.synth import generate_people
from deltalearn.engine.metrics_log import read_metrics
from deltalearn.mcn.config import MCNConfig, SourceConfig
from deltalearn.mcn.data import open_coco
from deltalearn.mcn.evaluate import format_metrics
from deltalearn.mcn.sources import SourceMix, open_source, open_sources
from deltalearn.mcn.train import train

VAL_SEED_OFFSET = 1000
ROWS = ("all_labels", "split", "split_naive", "all_uncertainty", "split_uncertainty", "only_det", "only_seg",
        "only_det_pose", "grow_base", "grow_naive", "grow_frozen", "grow_lwf")
GROW_FROZEN = ["backbone", "neck", "tasks.det", "tasks.seg"]


class NaiveMix(SourceMix):
    """Both halves labelled for every task, their missing labels left empty: the det + pose
    half's masks cleared (segmentation sees all background), the seg half's boxes made empty
    (detection and pose see no objects)."""

    def __getitem__(self, index: int) -> Sample | None:
        sample = super().__getitem__(index)
        if sample is None:
            return None
        source, _ = self.locate(index)
        if source == 0:
            return dataclasses.replace(sample, masks=torch.zeros_like(sample.masks))
        return dataclasses.replace(sample, boxes=torch.zeros_like(sample.boxes))


def split_annotations(train_dir: Path, out: Path) -> tuple[Path, Path]:
    """The training annotations as two files: the first half of the images, the second half."""
    coco = json.loads((train_dir / "annotations.json").read_text())
    images = sorted(coco["images"], key=lambda image: image["id"])
    half = len(images) // 2
    files = []
    for name, part in (("det_pose_half", images[:half]), ("seg_half", images[half:])):
        ids = {image["id"] for image in part}
        subset = {**coco, "images": part, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
        path = out / f"{name}.json"
        atomic_write_text(path, json.dumps(subset))
        files.append(path)
    return files[0], files[1]


def row_config(row: str, epochs: int, seed: int, halves: tuple[Path, Path], images: Path,
               overrides: list[str]) -> MCNConfig:
    name = {"only_det": "synth_det", "only_seg": "synth_seg", "only_det_pose": "synth_det_pose",
            "grow_base": "synth_seg_det"}.get(row, "synth_seg_det_pose")
    config = load_config(MCNConfig, PACKAGED_CONFIGS / "mcn" / f"{name}.yaml",
                         [f"train.epochs={epochs}", f"train.val_every={epochs}", "train.max_minutes=0",
                          f"train.seed={seed}", *overrides])
    if row.endswith("uncertainty"):
        config.loss.weighting = "uncertainty"
    det_pose, seg = halves
    if row.startswith("split"):
        config.data.sources = [SourceConfig(ann=str(det_pose), images=str(images), tasks=["det", "pose"], name="det_pose"),
                               SourceConfig(ann=str(seg), images=str(images), tasks=["seg"], name="seg")]
    if row == "split_naive":
        for source in config.data.sources:
            source.tasks = []  # labelled for every task: the missing labels are negatives
    if row.startswith("grow_") and row != "grow_base":
        config.data.sources = [SourceConfig(ann=str(det_pose), images=str(images), tasks=["pose"], name="pose_only")]
        config.train.freeze = GROW_FROZEN if row == "grow_frozen" else []
        config.loss.distill = 1.0 if row == "grow_lwf" else 0.0
        config.train.epochs = config.train.val_every = 2 * epochs  # half the images: the same number of steps
    return config


def training_set(row: str, config: MCNConfig, train_dir: Path):  # noqa: ANN201
    if row == "split_naive":
        opened = [open_source(s, None, config.model.tasks) for s in config.data.sources]
        return NaiveMix(opened, config.data.sources)
    if row.startswith("grow_") and row != "grow_base":  # seg and det are enabled but labelled by no source
        return SourceMix([open_source(config.data.sources[0], None, config.model.tasks)], config.data.sources)
    if config.data.sources:
        return open_sources(config)
    return open_coco(train_dir)


CURVES = {"det.heatmap": "detection heatmap loss", "seg.ce": "segmentation cross-entropy",
          "pose.heatmap": "keypoint heatmap loss"}
BARS = (("det_ap", "box AP"), ("pose_ap", "keypoint AP"), ("seg_iou", "person IoU"))


def plot(result: dict, runs: Path, path: Path) -> None:
    """Training-loss curves of each task per row (from metrics.jsonl) above the held-out metrics."""
    rows = [row for row in ROWS if row in result["rows"]]
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (key, title) in zip(axes[0], CURVES.items()):
        distilled = f"distill.{key.split('.')[0]}"  # what Learning without Forgetting adds for the task
        for row in rows:
            for name, style, label in ((key, "-", row), (distilled, "--", f"{row} ({distilled})")):
                records = [r for r in read_metrics(runs / row) if r.get("split") == "train" and r.get(name, 0) > 0]
                if records:  # a task no sample labels logs 0: nothing to draw
                    ax.plot([r["step"] for r in records], [r[name] for r in records], style, label=label,
                            linewidth=1.2, color=plt.cm.tab20(ROWS.index(row) % 20))  # one colour per row
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        if ax.lines:
            ax.legend(fontsize=7)
    for ax, (key, title) in zip(axes[1], BARS):
        values = [100 * result["rows"][row].get(key, float("nan")) for row in rows]
        ax.barh(rows, values, color="tab:blue")
        ax.set_title(f"held-out {title} (%)")
        ax.invert_yaxis()
        for y, value in enumerate(values):
            if value == value:
                ax.text(value, y, f" {value:.1f}", va="center", fontsize=7)
    setup = result["setup"]
    figure.suptitle(f"partial labels: {setup['epochs']} epochs per row, {setup['cpu']}, {setup['cores']} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/partial_labels"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/partial_labels.json"))
    parser.add_argument("--epochs", type=int, default=5, help="epochs of 125 steps (2,000 images, batches of 16)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure of --json and stop")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every row")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.json.read_text()), args.out, args.json.with_suffix(".png"))
        return

    train_dir, val_dir = args.out / "data" / "train", args.out / "data" / "val"
    for folder, count, seed in ((train_dir, args.images, args.seed),
                                (val_dir, args.val_images, args.seed + VAL_SEED_OFFSET)):
        if not (folder / "annotations.json").is_file():
            generate_people(folder, num_images=count, size=128, seed=seed, scene="simple")
    halves = split_annotations(train_dir, args.out / "data")
    result = json.loads(args.json.read_text()) if args.json.is_file() else {}
    result["setup"] = {"epochs": args.epochs, "images": args.images, "val_images": args.val_images,
                       "seed": args.seed, "overrides": args.overrides, **machine(),
                       "command": "python benchmarks/partial_labels.py " + " ".join(
                           [f"--epochs {args.epochs}", f"--json {args.json}", *args.overrides])}
    rows = result.setdefault("rows", {})
    for row in args.only:
        if row in rows:
            print(f"{row}: done already, skipped")
            continue
        config = row_config(row, args.epochs, args.seed, halves, train_dir / "images", args.overrides)
        init = args.out / "grow_base" if row.startswith("grow_") and row != "grow_base" else None
        if init is not None and "grow_base" not in rows:
            raise SystemExit(f"{row} starts from grow_base: run it first")
        started = time.time()
        metrics = train(config, training_set(row, config, train_dir), args.out / row, val_set=open_coco(val_dir),
                        init=init)
        rows[row] = {k: v for k, v in metrics.items() if k.startswith(("det_", "pose_", "seg_"))}
        rows[row] |= {"steps": metrics.get("step"), "minutes": round((time.time() - started) / 60, 2),
                      "tasks": list(config.model.tasks)}
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(format_metrics(rows[row], title=f"{row} ({rows[row]['steps']} steps, {rows[row]['minutes']} min)"))
    plot(result, args.out, args.json.with_suffix(".png"))


if __name__ == "__main__":
    main()
