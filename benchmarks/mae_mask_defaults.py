"""How many masks, drawn how: the patch graph's IoU over mask seeds, for the choice of defaults.

For each (number of masks, schedule) and each seed (which draws the masks and seeds Louvain),
``evaluate_folder`` scores the patch graph, the graph + GrabCut and normalized cut on the same
graph against the ground-truth masks of a data folder. One mask draw is a sample: the mean and
spread over seeds are what a default should be chosen on.

    python benchmarks/mae_mask_defaults.py --weights RUN/run --data data/mae_test \
        --json benchmarks/results/mae_mask_defaults.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from deltalearn.bench import cpu_model
from deltalearn.data.io import atomic_write_text
from deltalearn.mae.evaluate import evaluate_folder
from deltalearn.mae.pretrain import load_trained_mae
from deltalearn.mae.segment import PatchGraphConfig, PatchGraphSegmenter

SETTINGS = ((64, "random"), (32, "balanced"), (32, "random"), (64, "balanced"), (16, "balanced"))
METHODS = (("graph", ("variants", "graph")), ("graph+grabcut", ("variants", "graph+grabcut")),
           ("ncut", ("baselines", "ncut")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="MAE run folder or weight file")
    parser.add_argument("--data", type=Path, required=True, help="folder with images/ and masks/")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/mae_mask_defaults.json"))
    args = parser.parse_args()
    model = load_trained_mae(args.weights)
    result: dict = {"command": "python " + " ".join(sys.argv), "cpu": cpu_model(), "weights": str(args.weights),
                    "data": str(args.data), "seeds": args.seeds, "runs": []}
    for num_masks, schedule in SETTINGS:
        for seed in args.seeds:
            config = PatchGraphConfig(num_masks=num_masks, masks=schedule, seed=seed)
            start = time.perf_counter()
            scores = evaluate_folder(PatchGraphSegmenter(model, config), args.data, progress=False)
            run = {"num_masks": num_masks, "masks": schedule, "seed": seed, "images": scores["images"],
                   "seconds": round(time.perf_counter() - start, 1)}
            for name, (group, key) in METHODS:
                run[name] = {"iou": scores[group][key]["iou"], "max_fbeta": scores[group][key]["max_fbeta"]}
            result["runs"].append(run)
            print(f"{num_masks:3d} {schedule:9s} seed {seed}: " + ", ".join(
                f"{name} {run[name]['iou']:.3f}" for name, _ in METHODS), flush=True)
    result["summary"] = summarize(result["runs"])
    print(format_summary(result["summary"]))
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def summarize(runs: list[dict]) -> list[dict]:
    """Mean, lowest and highest IoU over seeds per setting and method."""
    rows = []
    for num_masks, schedule in dict.fromkeys((r["num_masks"], r["masks"]) for r in runs):
        mine = [r for r in runs if (r["num_masks"], r["masks"]) == (num_masks, schedule)]
        row = {"num_masks": num_masks, "masks": schedule, "seeds": len(mine)}
        for name, _ in METHODS:
            values = [r[name]["iou"] for r in mine]
            row[name] = {"mean_iou": round(statistics.fmean(values), 4), "min_iou": min(values), "max_iou": max(values)}
        rows.append(row)
    return rows


def format_summary(rows: list[dict]) -> str:
    lines = ["| masks | patch graph IoU: mean (min-max) | + GrabCut | normalized cut |", "|---|---|---|---|"]
    for row in rows:
        cells = [f"{row[name]['mean_iou']:.3f} ({row[name]['min_iou']:.3f}-{row[name]['max_iou']:.3f})"
                 for name, _ in METHODS]
        lines.append(f"| {row['num_masks']} {row['masks']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
