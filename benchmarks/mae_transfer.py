"""Does MAE pretraining help the MCN? (issue 17's experiment)

1. Pretrain an MAE (mae_vit_cpu_patch8: width 192, depth 4, patch 8) at the MCN's input
   size (128 px) on generated people images whose labels are never read.
2. Fine-tune seg + det + pose on 200 and on 2,000 labelled images, the same number of steps
   for every row, from three starts:
     mae        the plain-ViT backbone from that MAE's encoder (model.backbone=mae:RUN)
     vit        the same ViT from random weights (model.backbone=vit, its shapes)
     resnet18   the demo's CNN from random weights
3. Compare at equal fine-tuning steps, and at equal total CPU time (pretraining + fine-tuning
   for the MAE start), on one held-out set labelled for every task.

CPU time is the user + system time of this process and its data workers (getrusage), so a
job sharing the cores slows the wall clock but not the comparison. Each run lives under
--out and each finished row is written to --json at once (atomic); started again with the same
arguments, the benchmark skips finished rows and resumes unfinished runs from their last
epoch; when the MAE run itself is gone (a fresh checkout keeps only the JSON), it pretrains
it again with the same settings and seed and records that repeat's loss beside the first.
A results file from other settings is refused (exit 2).

    python benchmarks/mae_transfer.py --json benchmarks/results/mae_transfer.json --out runs/mae_transfer
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deltalearn.bench.results import resume_results, val_curve  # noqa: E402
from deltalearn.config import PACKAGED_CONFIGS, ConfigError, load_config  # noqa: E402
from deltalearn.data.io import atomic_write_text  # noqa: E402
from deltalearn.data.synth import generate_people  # noqa: E402
from deltalearn.engine import checkpoint as ckpt  # noqa: E402
from deltalearn.mae.config import MAEPretrainConfig  # noqa: E402
from deltalearn.mae.pretrain import FINAL_WEIGHTS, pretrain  # noqa: E402
from deltalearn.mcn.config import MCNConfig  # noqa: E402
from deltalearn.mcn.data import open_coco  # noqa: E402
from deltalearn.mcn.evaluate import format_metrics  # noqa: E402
from deltalearn.mcn.train import train  # noqa: E402
from deltalearn.vit.checkpoint import read_mae_encoder  # noqa: E402

STARTS = ("mae", "vit", "resnet18")
METRICS = (("det_ap", "box AP"), ("pose_ap", "keypoint AP"), ("seg_iou", "person IoU"))
SETTINGS = ("pretrain_images", "pretrain_steps", "finetune_steps", "labels", "val_images", "val_steps", "size",
            "scene", "seed", "overrides")
VAL_SEED, PRETRAIN_SEED = 1000, 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/mae_transfer"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/mae_transfer.json"))
    parser.add_argument("--pretrain-images", type=int, default=10000, help="unlabelled images for the MAE")
    parser.add_argument("--pretrain-steps", type=int, default=3000, help="MAE steps (batch 32)")
    parser.add_argument("--finetune-steps", type=int, default=2000, help="MCN steps of every row (batch 16)")
    parser.add_argument("--labels", type=int, nargs="+", default=[200, 2000], help="labelled training images")
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--val-steps", type=int, default=500, help="validate about every N fine-tuning steps")
    parser.add_argument("--size", type=int, default=128, help="image side of every stage")
    parser.add_argument("--scene", default="simple")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=STARTS, default=list(STARTS))
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from --json")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="MCN config overrides of every row")
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.json.read_text()), args.json.with_suffix(".png"))
        return
    settings = {name: getattr(args, name) for name in SETTINGS}
    try:
        results = resume_results(args.json, settings)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    data = args.out / "data"
    val_dir = data / "val"
    _generate(val_dir, args.val_images, args.seed + VAL_SEED, args)
    mae_run = args.out / "mae"
    if "pretrain" not in results:
        results["pretrain"] = run_pretrain(args, data)
        save(args.json, results)
    elif not (mae_run / FINAL_WEIGHTS).is_file() and any(f"mae_{n}" not in results["rows"] for n in args.labels):
        # a new checkout keeps the JSON but not the runs: pretrain again with the same settings and
        # seed; the recorded CPU time stays the first run's, the final loss shows whether it matched
        again = run_pretrain(args, data)
        print(f"pretrained the MAE again: train loss {again['train_loss']:.4f} (recorded "
              f"{results['pretrain']['train_loss']:.4f}), {again['cpu_s'] / 60:.1f} CPU min")
        results["pretrain"].setdefault("repeats", []).append({k: again[k] for k in ("cpu_s", "train_loss")})
        save(args.json, results)
    for labels in args.labels:
        train_dir = data / f"train_{labels}"
        _generate(train_dir, labels, args.seed, args)
        for start in args.only:
            key = f"{start}_{labels}"
            if key in results["rows"]:
                print(f"{key}: done, kept from {args.json}")
                continue
            results["rows"][key] = finetune(args, start, mae_run, train_dir, val_dir, args.out / key)
            save(args.json, results)
            print(format_metrics(results["rows"][key], title=f"{key} ({results['rows'][key]['steps']} steps)"))
    plot(results, args.json.with_suffix(".png"))
    print(summary(results))


def _generate(folder: Path, count: int, seed: int, args: argparse.Namespace) -> None:
    if not (folder / "annotations.json").is_file():
        generate_people(folder, num_images=count, size=args.size, seed=seed, scene=args.scene, workers=1)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (data workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_pretrain(args: argparse.Namespace, data: Path) -> dict:
    """The MAE, pretrained on unlabelled generated images at --size; its CPU time."""
    images = data / "unlabelled"
    _generate(images, args.pretrain_images, args.seed + PRETRAIN_SEED, args)
    run = args.out / "mae"
    epochs = math.ceil(args.pretrain_steps / (args.pretrain_images // 32))
    config = load_config(MAEPretrainConfig, PACKAGED_CONFIGS / "mae" / "synth_cpu.yaml",
                         [f"data.image_size={args.size}", f"train.epochs={epochs}", "train.val_every=0",
                          f"train.seed={args.seed}"])
    resume = (run / ckpt.LAST_STATE).is_file() and not (run / FINAL_WEIGHTS).is_file()
    started = cpu_seconds()
    metrics = {} if (run / FINAL_WEIGHTS).is_file() else pretrain(config, images / "images", run, resume=resume)
    spec, _ = read_mae_encoder(run)
    return {"cpu_s": round(cpu_seconds() - started, 1), "steps": metrics.get("step"), "epochs": epochs,
            "train_loss": metrics.get("train_loss"), "encoder": spec.describe(), "resumed": resume}


def finetune(args: argparse.Namespace, start: str, mae_run: Path, train_dir: Path, val_dir: Path, run: Path) -> dict:
    """One seg + det + pose fine-tuning run for --finetune-steps; metrics, curve, CPU time."""
    train_set = open_coco(train_dir)
    per_epoch = max(1, len(train_set) // 16)
    epochs = math.ceil(args.finetune_steps / per_epoch)
    budget = [f"train.epochs={epochs}", "train.max_minutes=0", f"train.val_every={max(1, round(args.val_steps / per_epoch))}",
              f"train.seed={args.seed}", f"data.image_size={args.size}", "train.batch_size=16"]
    if start == "mae":
        backbone = [f"model.backbone=mae:{mae_run}"]
    elif start == "vit":
        spec, _ = read_mae_encoder(mae_run)
        backbone = ["model.backbone=vit", f"model.vit.embed_dim={spec.embed_dim}", f"model.vit.depth={spec.depth}",
                    f"model.vit.num_heads={spec.num_heads}", f"model.vit.patch_size={spec.patch_size}",
                    f"model.vit.mlp_ratio={spec.mlp_ratio}", f"model.vit.pos_grid=[{spec.grid[0]},{spec.grid[1]}]"]
    else:
        backbone = ["model.backbone=resnet18"]
    config = load_config(MCNConfig, PACKAGED_CONFIGS / "mcn" / "synth_seg_det_pose.yaml", [*budget, *backbone, *args.overrides])
    resume = (run / ckpt.LAST_STATE).is_file()
    started = cpu_seconds()
    metrics = train(config, train_set, run, val_set=open_coco(val_dir), resume=resume)
    row = {k: v for k, v in metrics.items() if k.startswith(("det_", "pose_", "seg_"))}
    return row | {"steps": metrics.get("step"), "labels": len(train_set), "start": start, "resumed": resume,
                  "cpu_s": round(cpu_seconds() - started, 1), "curve": val_curve(run)}


def save(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")


def summary(results: dict) -> str:
    """Percent table per label count: each start's final metrics, and MAE minus random ViT."""
    lines = ["start      labels   box AP   kp AP   person IoU   fine-tune CPU min   total CPU min"]
    pre = results.get("pretrain", {}).get("cpu_s", 0.0)
    for key, row in results["rows"].items():
        total = row["cpu_s"] + (pre if row["start"] == "mae" else 0.0)
        lines.append(f"{row['start']:<10} {row['labels']:>6} {100 * row.get('det_ap', 0):8.1f} {100 * row.get('pose_ap', 0):7.1f}"
                     f" {100 * row.get('seg_iou', 0):12.1f} {row['cpu_s'] / 60:19.1f} {total / 60:15.1f}")
    for labels in sorted({row["labels"] for row in results["rows"].values()}):
        mae, vit = results["rows"].get(f"mae_{labels}"), results["rows"].get(f"vit_{labels}")
        if mae and vit:
            gaps = ", ".join(f"{label} {100 * (mae[k] - vit[k]):+.1f}" for k, label in METRICS)
            lines.append(f"{labels} labels, MAE start minus random ViT at equal steps: {gaps}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Top: each metric against fine-tuning steps; bottom: against total CPU minutes."""
    rows = results["rows"]
    pre = results.get("pretrain", {}).get("cpu_s", 0.0)
    fig, axes = plt.subplots(2, len(METRICS), figsize=(4.3 * len(METRICS), 6.6), squeeze=False)
    styles = {200: "--", 2000: "-"}
    for column, (key, label) in enumerate(METRICS):
        for name, row in rows.items():
            points = [(r["step"], 100 * r[key]) for r in row["curve"] if r.get(key) is not None]
            if not points:
                continue
            steps, values = zip(*points)
            per_step = row["cpu_s"] / max(1, row["steps"])  # CPU seconds per step, constant within a run
            offset = pre if row["start"] == "mae" else 0.0
            minutes = [(offset + s * per_step) / 60 for s in steps]
            style = dict(linestyle=styles.get(row["labels"], ":"), marker="o", markersize=3,
                         color={"mae": "tab:red", "vit": "tab:blue", "resnet18": "tab:gray"}[row["start"]],
                         label=f"{row['start']}, {row['labels']} labels")
            axes[0][column].plot(steps, values, **style)
            axes[1][column].plot(minutes, values, **style)
        axes[0][column].set_title(label)
        axes[0][column].set_xlabel("fine-tuning step")
        axes[1][column].set_xlabel("total CPU minutes (MAE: pretraining included)")
        for ax in (axes[0][column], axes[1][column]):
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"MAE-pretrained ViT against random starts, seg + det + pose ({results.get('cpu', '')})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
