"""How fast can the patch graph segment, and what does speed cost? The trade-off of the number
of MAE forward passes per image (``num_masks``) with random and with balanced masks
(``masks=balanced``: every patch seen equally often, ``patch_graph.balanced_masks``):

1. seconds per 224 px image of ``mae_vit_base_patch16`` (random weights: the time does not
   depend on them), the whole ``PatchGraphSegmenter.segment`` (forward passes in bf16 where
   the CPU has it, graph, Louvain, mask), over ``--vit-images`` composites;
2. mean IoU of a trained MAE (``--weights``, e.g. a ``mae pretrain`` run of ``synth_cpu``) on a
   held-out composite set (``--data``, generated when missing: 300 images, seed 202), with the
   same settings; today's default is 64 random masks.

    python benchmarks/mae_segment_speed.py --weights runs/mae_cpu --json benchmarks/results/mae_segment_speed.json

Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from deltalearn.bench import cpu_model  # noqa: E402
from deltalearn.data.io import atomic_path, atomic_write_text  # noqa: E402
from deltalearn.data.synth import generate_composites, make_composite  # noqa: E402
from deltalearn.mae.evaluate import evaluate_folder  # noqa: E402
from deltalearn.mae.model import create_mae  # noqa: E402
from deltalearn.mae.pretrain import load_trained_mae  # noqa: E402
from deltalearn.mae.segment import PatchGraphConfig, PatchGraphSegmenter  # noqa: E402

PASSES = (8, 16, 32, 64)
SCHEDULES = ("random", "balanced")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="trained MAE (run folder or file) for the IoU curve")
    parser.add_argument("--data", type=Path, default=Path("runs/mae_speed/test"))
    parser.add_argument("--vit-images", type=int, default=4)
    parser.add_argument("--passes", type=int, nargs="+", default=list(PASSES))
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds over all settings; the median is kept")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/mae_segment_speed.json"))
    parser.add_argument("--figure", type=Path, default=Path("benchmarks/results/mae_segment_speed.png"))
    args = parser.parse_args()
    result: dict = {"command": "python " + " ".join(sys.argv), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu": cpu_model(), "vit_b": {}, "iou": {}}
    vit = create_mae("mae_vit_base_patch16").eval()
    images = [make_composite(7, index, 224)[0] for index in range(args.vit_images)]
    PatchGraphSegmenter(vit, PatchGraphConfig(num_masks=8)).segment(images[:1])  # warm-up
    settings = [(schedule, passes) for schedule in SCHEDULES for passes in args.passes]
    times: dict[tuple[str, int], list[float]] = {setting: [] for setting in settings}
    for round_ in range(args.repeats):  # rounds over every setting, in alternating order
        for schedule, passes in settings if round_ % 2 == 0 else settings[::-1]:
            segmenter = PatchGraphSegmenter(vit, PatchGraphConfig(num_masks=passes, masks=schedule))
            start = time.perf_counter()
            segmenter.segment(images)
            times[schedule, passes].append((time.perf_counter() - start) / len(images))
    for (schedule, passes), values in times.items():
        seconds = statistics.median(values)
        result["vit_b"][f"{schedule} {passes}"] = {"passes": passes, "masks": schedule,
                                                   "seconds_per_image": round(seconds, 3),
                                                   "rounds": [round(v, 3) for v in values]}
        print(f"ViT-B/16 224 px, {passes:>2} {schedule} masks: {seconds:.2f} s per image (median of "
              f"{len(values)}: {', '.join(f'{v:.2f}' for v in values)})", flush=True)
    if args.weights is not None:
        if not (args.data / "masks").is_dir():
            generate_composites(args.data, num_images=300, size=64, seed=202)
        model = load_trained_mae(args.weights)
        for schedule in SCHEDULES:
            for passes in args.passes:
                segmenter = PatchGraphSegmenter(model, PatchGraphConfig(num_masks=passes, masks=schedule))
                scores = evaluate_folder(segmenter, args.data, baselines=False, progress=False)
                result["iou"][f"{schedule} {passes}"] = {"passes": passes, "masks": schedule, "iou": scores["iou"],
                                                         "max_fbeta": scores["max_fbeta"],
                                                         "seconds": scores["seconds"], "images": scores["images"]}
                print(f"trained MAE, {passes:>2} {schedule} masks: IoU {scores['iou']:.4f}, max F "
                      f"{scores['max_fbeta']:.4f} ({scores['images']} images, {scores['seconds']:.1f} s)", flush=True)
        result["weights"] = str(args.weights)
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    _figure(result, args.figure)
    print(f"wrote {args.json} and {args.figure}")
    return 0


def _figure(result: dict, path: Path) -> None:
    panels = [("vit_b", "seconds_per_image", "s per 224 px image (ViT-B/16)")]
    if result["iou"]:
        panels.append(("iou", "iou", "mean IoU (trained CPU MAE)"))
    figure, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (part, key, label) in zip(axes[0], panels):
        for schedule in SCHEDULES:
            rows = sorted((r for r in result[part].values() if r["masks"] == schedule), key=lambda r: r["passes"])
            ax.plot([r["passes"] for r in rows], [r[key] for r in rows], marker="o", label=f"{schedule} masks")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("MAE forward passes per image (num_masks)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
