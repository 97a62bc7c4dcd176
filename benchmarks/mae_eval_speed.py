"""Seconds of ``mae eval`` (patch graph, GrabCut refinement, the three baselines) with the
images of a batch scored on 1 thread against one thread per core, in the same run, on
generated composites and a randomly initialised MAE (the time hardly depends on the weights).

    python benchmarks/mae_eval_speed.py --json benchmarks/results/mae_eval_speed.json

Run it alone on the machine. The scores of both settings must be equal; the script checks it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from deltalearn.bench import cpu_model
from deltalearn.data.io import atomic_write_text
from deltalearn.data.synth import generate_composites
from deltalearn.mae import create_mae
from deltalearn.mae.evaluate import evaluate_folder
from deltalearn.mae.segment import PatchGraphConfig, PatchGraphSegmenter

SETUPS = {  # name -> (variant, image side, images)
    "cpu_mae_64px": ("mae_vit_cpu_patch8", 64, 150),
    "vit_b16_224px": ("mae_vit_base_patch16", 224, 16),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("mae_eval_speed.json"))
    parser.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    result = {"command": "python " + " ".join(sys.argv), "cpu": cpu_model(), "cores": cores,
              "torch_threads": torch.get_num_threads(), "setups": {}}
    for name in args.setups:
        variant, size, images = SETUPS[name]
        with tempfile.TemporaryDirectory() as tmp:
            generate_composites(tmp, images, size, seed=7, workers=1, progress=False)
            torch.manual_seed(0)
            segmenter = PatchGraphSegmenter(create_mae(variant, img_size=(size, size)).eval(), PatchGraphConfig())
            evaluate_folder(segmenter, tmp, limit=2, progress=False, threads=1)  # warm-up
            row = {"images": images, "size": size, "variant": variant}
            scores = {}
            for threads in (1, cores):
                start = time.perf_counter()
                scores[threads] = evaluate_folder(segmenter, tmp, progress=False, threads=threads)
                row[f"seconds_per_image_{threads}_threads"] = round((time.perf_counter() - start) / images, 4)
            row["speedup"] = round(row["seconds_per_image_1_threads"] / row[f"seconds_per_image_{cores}_threads"], 3)
            row["same_scores"] = all(scores[1][k] == scores[cores][k] for k in ("iou", "max_fbeta", "baselines"))
        result["setups"][name] = row
        print(name, row, flush=True)
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
