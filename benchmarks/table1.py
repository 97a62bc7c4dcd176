"""The paper's Table 1 on the synthetic people dataset: does one multitask network keep
each task's accuracy? Trains the five head combinations with the same data, the same
budget and the same held-out set, then prints and writes the table.

    python benchmarks/table1.py --minutes 10 --images 2000 --out runs/table1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from deltalearn.config import PACKAGED_CONFIGS, load_config
from deltalearn.data.io import atomic_write_text
from deltalearn.data.synth import SCENES, generate_people
from deltalearn.mcn.evaluate import format_metrics
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.data import open_coco
from deltalearn.mcn.train import train

COMBINATIONS = ("seg", "det", "seg_det", "det_pose", "seg_det_pose")
VAL_SEED_OFFSET = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/table1"))
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per network")
    parser.add_argument("--images", type=int, default=2000, help="synthetic training images")
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128, help="generated image side (the configs train at 128 px)")
    parser.add_argument("--keypoint-min-area", type=int, default=None,
                        help="persons of smaller area get no keypoints, as in COCO (default: COCO's 32^2 px "
                             "in 640 px images scaled to --size; 0: all labelled)")
    parser.add_argument("--scene", choices=list(SCENES), default="cluttered", help="generated scenes (default cluttered)")
    parser.add_argument("--only", nargs="+", choices=COMBINATIONS, default=list(COMBINATIONS))
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every network")
    args = parser.parse_args()

    train_dir, val_dir = args.out / "data" / "train", args.out / "data" / "val"
    for folder, count, seed in ((train_dir, args.images, args.seed), (val_dir, args.val_images, args.seed + VAL_SEED_OFFSET)):
        if not (folder / "annotations.json").is_file():
            generate_people(folder, num_images=count, size=args.size, seed=seed,
                            keypoint_min_area=args.keypoint_min_area, scene=args.scene)
    rows = {}
    for combo in args.only:
        config = load_config(MCNConfig, PACKAGED_CONFIGS / "mcn" / f"synth_{combo}.yaml",
                             [f"train.max_minutes={args.minutes}", f"train.seed={args.seed}", *args.overrides])
        started = time.time()
        metrics = train(config, open_coco(train_dir), args.out / combo, val_set=open_coco(val_dir))
        rows[combo] = {k: v for k, v in metrics.items() if k.startswith(("det_", "pose_", "seg_"))}
        rows[combo]["minutes"] = (time.time() - started) / 60
        rows[combo]["epochs_done"] = metrics.get("epoch")
        rows[combo]["steps"] = metrics.get("step")
        print(format_metrics(rows[combo], title=f"only {combo}" if "_" not in combo else combo.replace("_", " + ")))
    atomic_write_text(args.out / "table1.json", json.dumps(rows, indent=2) + "\n")
    print("\nTable 1 on the synthetic people dataset (percent; held-out set of", args.val_images, "images)")
    for combo, metrics in rows.items():
        print(format_metrics(metrics, title=f"{combo:<14} ({metrics['minutes']:.1f} min, {metrics['steps']} steps)"))


if __name__ == "__main__":
    main()
