"""Do cheaper heads keep accuracy? seg + det + pose (``synth_seg_det_pose``) trained for the
same number of steps with each head design and backbone, on the demo's data (2,000 simple
scenes, 128 px; 200 held-out images of another seed), validated along the way.

Designs: CenterNet's dense 3x3 conv per output (today's default), and a depthwise-separable
3x3 conv shared by each task's outputs (``model.head_conv=separable model.head_trunk=per_task``),
and that with the neck's 3x3 smoothing convs separable too (``model.neck_conv=separable``); and
one dense or separable trunk per task with 32 or 16 hidden channels instead of 64
(``model.head_channels``).
The learning-rate schedule follows steps, not the clock, so that every run anneals to zero at
the same step. Results go to ``--json`` after each run; a rerun skips the runs it holds.

    python benchmarks/head_designs.py --epochs 12 --json benchmarks/results/head_designs.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from deltalearn.bench import cpu_model
from deltalearn.config import PACKAGED_CONFIGS, load_config
from deltalearn.data.io import atomic_write_text
from deltalearn.data.synth import generate_people
from deltalearn.engine.metrics_log import read_metrics
from deltalearn.engine.precision import resolve_precision
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.data import open_coco
from deltalearn.mcn.evaluate import format_metrics
from deltalearn.mcn.train import train

BACKBONES = {"resnet18": [], "mobilenetv3": ["model.backbone=mobilenetv3_large_100"]}
DESIGNS = {"dense per output": [], "separable per task": ["model.head_conv=separable", "model.head_trunk=per_task"],
           "separable per task, separable neck": ["model.head_conv=separable", "model.head_trunk=per_task",
                                                  "model.neck_conv=separable"],
           "dense per task, 32 channels": ["model.head_trunk=per_task", "model.head_channels=32"],
           "separable per task, 32 channels": ["model.head_conv=separable", "model.head_trunk=per_task",
                                               "model.head_channels=32"],
           "separable per task, 16 channels": ["model.head_conv=separable", "model.head_trunk=per_task",
                                               "model.head_channels=16"]}
VAL_SEED_OFFSET = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/head_designs"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/head_designs.json"))
    parser.add_argument("--epochs", type=int, default=12, help="epochs of 125 steps (batch 16, 2,000 images)")
    parser.add_argument("--val-every", type=int, default=4, help="validate every N epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only-backbone", nargs="+", choices=list(BACKBONES), default=list(BACKBONES))
    parser.add_argument("--only-design", nargs="+", choices=list(DESIGNS), default=list(DESIGNS))
    parser.add_argument("--figure", type=Path, default=Path("benchmarks/results/head_designs.png"))
    parser.add_argument("--plot-only", action="store_true", help="draw --figure from --json and stop")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.json.read_text()), args.figure)
        return
    train_dir, val_dir = args.out / "data" / "train", args.out / "data" / "val"
    for folder, count, seed in ((train_dir, 2000, args.seed), (val_dir, 200, args.seed + VAL_SEED_OFFSET)):
        if not (folder / "annotations.json").is_file():
            generate_people(folder, num_images=count, size=128, seed=seed, scene="simple")
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    results.setdefault("runs", {})
    results.update(command="python " + " ".join(sys.argv), epochs=args.epochs)
    for backbone in args.only_backbone:
        for design in args.only_design:
            overrides = DESIGNS[design]
            name = f"{backbone}, {design}"
            if name in results["runs"]:
                print(f"{name}: done before, skipped")
                continue
            config = load_config(MCNConfig, PACKAGED_CONFIGS / "mcn" / "synth_seg_det_pose.yaml", [
                *BACKBONES[backbone], *overrides, f"train.epochs={args.epochs}", "train.max_minutes=0",
                "train.schedule_by_clock=false", f"train.val_every={args.val_every}", f"train.seed={args.seed}"])
            run = args.out / name.replace(", ", "_").replace(" ", "_")
            started = time.time()
            metrics = train(config, open_coco(train_dir), run, val_set=open_coco(val_dir))
            curve = [{k: v for k, v in r.items() if k in ("step", "det_ap", "det_ap50", "pose_ap", "pose_ap50",
                                                          "seg_iou", "seg_miou")}
                     for r in read_metrics(run) if r.get("split") == "val"]
            results["runs"][name] = {
                "overrides": overrides + BACKBONES[backbone], "steps": metrics.get("step"),
                "minutes": round((time.time() - started) / 60, 2), "cpu": cpu_model(),
                "precision": resolve_precision(config.train.precision, "cpu").name,
                "metrics": {k: v for k, v in metrics.items() if k.startswith(("det_", "pose_", "seg_"))},
                "curve": curve}
            print(format_metrics(results["runs"][name]["metrics"], title=name))
            atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    plot(results, args.figure)


def plot(results: dict, path: Path) -> None:
    """Box AP, keypoint AP and person IoU against steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deltalearn.data.io import atomic_path

    metrics = (("det_ap", "box AP"), ("pose_ap", "keypoint AP"), ("seg_iou", "person IoU"))
    figure, axes = plt.subplots(1, len(metrics), figsize=(15, 3.8))
    for ax, (key, label) in zip(axes, metrics):
        for name, run in results["runs"].items():
            style = "-" if name.startswith("resnet18") else "--"
            ax.plot([r["step"] for r in run["curve"]], [100 * r[key] for r in run["curve"]], style, marker="o",
                    label=name)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    cpus = sorted({run.get("cpu", "") for run in results["runs"].values()} - {""})
    figure.suptitle("seg + det + pose at equal steps, by head design, one run each (" + "; ".join(cpus) + ")")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
