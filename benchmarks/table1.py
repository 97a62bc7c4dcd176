"""The paper's Table 1 on the synthetic people dataset: does one multitask network keep
each task's accuracy? Trains the five head combinations with the same data, the same
number of steps and the same held-out set, validates every --val-steps, and writes the
table, the curves (every metric against steps) and a figure.

    python benchmarks/table1.py --steps 8000 --scene simple \\
        --json benchmarks/results/table1_8000.json --out runs/table1_8000

The budget is in steps, not minutes: the learning rate anneals to zero at --steps on every
machine, and the curves of two machines line up. Each network's run lives under --out and
saves a checkpoint every epoch; a stopped benchmark started again with the same arguments
resumes every unfinished network from its last epoch and skips the finished ones (their
rows are in --json). --json written with other settings is refused (exit 2).

--minutes M trains by the clock instead (the earlier form of this table); it writes no
curves beyond the validations that fit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from deltalearn.bench import cpu_model  # noqa: E402
from deltalearn.bench.results import resume_results, val_curve  # noqa: E402
from deltalearn.config import PACKAGED_CONFIGS, ConfigError, load_config  # noqa: E402
from deltalearn.data.io import atomic_write_text  # noqa: E402
from deltalearn.data.synth import SCENES, generate_people  # noqa: E402
from deltalearn.engine import checkpoint as ckpt  # noqa: E402
from deltalearn.engine.precision import default_device, resolve_precision  # noqa: E402
from deltalearn.mcn.config import MCNConfig  # noqa: E402
from deltalearn.mcn.data import open_coco  # noqa: E402
from deltalearn.mcn.evaluate import format_metrics  # noqa: E402
from deltalearn.mcn.train import train  # noqa: E402

COMBINATIONS = ("seg", "det", "seg_det", "det_pose", "seg_det_pose")
VAL_SEED_OFFSET = 1000
PANELS = (("det_ap", "box AP"), ("pose_ap", "keypoint AP"), ("seg_iou", "person IoU"))
SETTINGS = ("steps", "minutes", "images", "val_images", "val_steps", "seed", "size", "scene",
            "keypoint_min_area", "overrides")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/table1"), help="runs and generated data")
    parser.add_argument("--json", type=Path, default=None, help="results file (default OUT/table1.json)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="training steps per network (default 8000)")
    budget.add_argument("--minutes", type=float, default=None, help="train by the clock instead of --steps")
    parser.add_argument("--val-steps", type=int, default=1000, help="validate about every N steps (with --steps)")
    parser.add_argument("--images", type=int, default=2000, help="synthetic training images")
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="generated image side (the configs train at 128 px)")
    parser.add_argument("--keypoint-min-area", type=int, default=None,
                        help="persons of smaller area get no keypoints, as in COCO (default: COCO's 32^2 px "
                             "in 640 px images scaled to --size; 0: all labelled)")
    parser.add_argument("--scene", choices=list(SCENES), default="cluttered", help="generated scenes (default cluttered)")
    parser.add_argument("--only", nargs="+", choices=COMBINATIONS, default=list(COMBINATIONS))
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from --json")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every network")
    args = parser.parse_args()
    if args.steps is None and args.minutes is None:
        args.steps = 8000
    json_path = args.json or args.out / "table1.json"
    if args.plot_only:
        plot(json.loads(json_path.read_text()), json_path.with_suffix(".png"))
        return

    settings = {name: getattr(args, name) for name in SETTINGS}
    try:
        results = resume_results(json_path, settings)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    train_dir, val_dir = args.out / "data" / "train", args.out / "data" / "val"
    for folder, count, seed in ((train_dir, args.images, args.seed), (val_dir, args.val_images, args.seed + VAL_SEED_OFFSET)):
        if not (folder / "annotations.json").is_file():
            generate_people(folder, num_images=count, size=args.size, seed=seed,
                            keypoint_min_area=args.keypoint_min_area, scene=args.scene)
    train_set, val_set = open_coco(train_dir), open_coco(val_dir)
    for combo in args.only:
        if combo in results["rows"]:
            print(f"{combo}: done ({results['rows'][combo]['steps']} steps), kept from {json_path}")
            continue
        run_dir = args.out / combo
        config = load_config(MCNConfig, PACKAGED_CONFIGS / "mcn" / f"synth_{combo}.yaml",
                             [*_budget(args, len(train_set)), f"train.seed={args.seed}", *args.overrides])
        resume = (run_dir / ckpt.LAST_STATE).is_file()
        started = time.time()
        metrics = train(config, train_set, run_dir, val_set=val_set, resume=resume)
        row = {k: v for k, v in metrics.items() if k.startswith(("det_", "pose_", "seg_"))}
        row |= {"steps": metrics.get("step"), "epochs": metrics.get("epoch"),
                "minutes_this_session": round((time.time() - started) / 60, 2), "resumed": resume,
                "cpu": cpu_model(), "device": _device_name(),
                "precision": resolve_precision(config.train.precision, default_device()).name,
                "curve": val_curve(run_dir)}
        results["rows"][combo] = row
        atomic_write_text(json_path, json.dumps(results, indent=2) + "\n")
        print(format_metrics(row, title=combo.replace("_", " + ")))
    plot(results, json_path.with_suffix(".png"))
    print(f"\nTable 1 on the synthetic people dataset (percent; held-out set of {args.val_images} images)")
    for combo, row in results["rows"].items():
        print(format_metrics(row, title=f"{combo:<14} ({row['steps']} steps)"))


def _device_name() -> str:
    """What trained the network: the GPU's name, or "cpu"."""
    device = default_device()
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _budget(args: argparse.Namespace, images: int) -> list[str]:
    """Overrides for the training budget: epochs reaching --steps, validation about every --val-steps."""
    if args.minutes is not None:
        return [f"train.max_minutes={args.minutes}"]
    batch = load_config(MCNConfig, PACKAGED_CONFIGS / "mcn" / "synth_det.yaml", args.overrides).train.batch_size
    per_epoch = max(1, images // batch)
    epochs = math.ceil(args.steps / per_epoch)
    val_every = max(1, round(args.val_steps / per_epoch))
    return [f"train.epochs={epochs}", "train.max_minutes=0", f"train.val_every={val_every}"]


def plot(results: dict, path: Path) -> None:
    """Each metric against steps, one line per network that has it."""
    rows = results["rows"]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4))
    for ax, (key, label) in zip(axes, PANELS):
        for combo, row in rows.items():
            points = [(r["step"], 100 * r[key]) for r in row.get("curve", []) if r.get(key) is not None]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="o", markersize=3, label=combo.replace("_", "+"),
                        color=f"C{COMBINATIONS.index(combo)}", linewidth=2.2 if combo == "seg_det_pose" else 1.2)
        ax.set_title(label)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    settings = results.get("settings", {})
    machines = sorted({row.get("cpu", results.get("cpu", "")) for row in rows.values()})
    fig.suptitle(f"Table 1 networks on synthetic {settings.get('scene', '')} scenes, "
                 f"{settings.get('size', '')} px ({'; '.join(machines)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
