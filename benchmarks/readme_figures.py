"""The README's two pictures: the architecture, and predictions of a trained MCN.

    python benchmarks/readme_figures.py --weights RUN --images DIR [--count 6]

writes docs/images/architecture.png (drawn from the text below) and docs/images/predictions.png
(the first --count images of DIR with the network's boxes, masks and skeletons, in a row).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from deltalearn import MCN  # noqa: E402

OUT = Path("docs/images")
# (x, y, width, height, text, colour) in axis units of a 16 x 7 canvas
BOXES = [
    (0.2, 3.0, 2.4, 1.2, "COCO files, folders,\nvideos, cameras, streams\n(deltalearn.data)", "#dfe7f5"),
    (3.2, 3.0, 2.2, 1.2, "timm backbone\n(features_only)", "#f5e6d3"),
    (6.0, 3.0, 2.0, 1.2, "neck\nstride 4", "#f5e6d3"),
    (8.8, 5.0, 2.6, 1.0, "det: class heatmaps,\nbox size, offset", "#e3f2dc"),
    (8.8, 3.1, 2.6, 1.0, "seg: class logits", "#e3f2dc"),
    (8.8, 1.2, 2.6, 1.0, "pose: 17 keypoint heatmaps,\ndisplacements, offsets", "#e3f2dc"),
    (12.2, 3.0, 3.5, 1.2, "decoding -> boxes, masks,\nkeypoints; COCO results;\nByteTrack identities", "#f2dcea"),
    (3.2, 0.1, 4.8, 0.8, "MAE encoder: patch graph -> Louvain -> foreground", "#ece6f5"),
]
ARROWS = [((2.6, 3.6), (3.2, 3.6)), ((5.4, 3.6), (6.0, 3.6)), ((8.0, 3.8), (8.8, 5.5)), ((8.0, 3.6), (8.8, 3.6)),
          ((8.0, 3.4), (8.8, 1.7)), ((11.4, 5.5), (12.2, 3.9)), ((11.4, 3.6), (12.2, 3.6)), ((11.4, 1.7), (12.2, 3.3)),
          ((1.4, 3.0), (3.2, 0.5))]
LAYERS = ("applications: cli, demo, bench  >  api (MCN, MAE)  >  export (ONNX, INT8, onnxruntime)  >  "
          "mcn | mae  >  engine | evaluation | viz  >  config  >  data")


def architecture(path: Path) -> None:
    figure, ax = plt.subplots(figsize=(16, 7.6))
    ax.set_xlim(0, 16)
    ax.set_ylim(-0.9, 6.6)
    ax.axis("off")
    for x, y, w, h, text, colour in BOXES:
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", facecolor=colour, edgecolor="#555"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=11)
    for start, end in ARROWS:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16, color="#444"))
    ax.text(8.0, 6.4, "Multitask CenterNet: one shared backbone, any subset of three heads; each task owns its "
            "targets, loss, decoding and COCO results", ha="center", fontsize=12, weight="bold")
    ax.text(8.0, -0.6, "layers (each imports only those to its right): " + LAYERS, ha="center", fontsize=9.5)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def predictions(weights: Path, images: Path, count: int, path: Path) -> None:
    files = sorted(images.glob("*.png"))[:count]
    drawn = [result.plot(min_side=256) for result in MCN(weights).predict(files)]
    height = max(d.shape[0] for d in drawn)
    row = np.concatenate([np.pad(d, ((0, height - d.shape[0]), (0, 8), (0, 0)), constant_values=255) for d in drawn],
                         axis=1)
    plt.imsave(path, row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="an MCN run folder or weights file")
    parser.add_argument("--images", type=Path, help="a folder of held-out images")
    parser.add_argument("--count", type=int, default=6)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    architecture(OUT / "architecture.png")
    if args.weights and args.images:
        predictions(args.weights, args.images, args.count, OUT / "predictions.png")


if __name__ == "__main__":
    main()
