"""``mae eval --report DIR``: a Markdown report of the patch graph beside its baselines.

``DIR/report.md`` holds the methods' scores side by side with how often each beats the
patch graph, their mean precision-recall curves, the distribution of per-image IoU, and the
worst and best images of the patch graph with every method's mask beside the ground truth.
``DIR/report.json`` keeps the numbers, per image included.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data.io import atomic_write_text
from ..viz.plots import plot_curves_xy, plot_distributions, plot_mask_grid
from .evaluate import Gallery

REPORT_FILE = "report.md"
REPORT_JSON = "report.json"


def write_mae_report(result: dict, gallery: Gallery, out_dir: str | Path, title: str) -> Path:
    """Write ``out_dir/report.md`` and its figures from ``evaluate_folder``'s ``result`` and the
    ``gallery`` it filled; returns the path of report.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    method = result["method"]
    scored = {**result["variants"], **result["baselines"]}
    lines = [f"# {title}", "",
             f"{result['images']} images ({result['skipped']} skipped), patch grid {result['grid'][0]}x"
             f"{result['grid'][1]}, {result['seconds']:.1f} s. The method is **{method}**; IoU at a 0.5 threshold "
             "per image, averaged; max F-beta (beta^2 = 0.3) over 255 thresholds.", "",
             "| method | IoU | max F | images where it beats " + method + " |", "|---|---:|---:|---:|"]
    for name, scores in scored.items():
        wins = sum(1 for row in gallery.per_image if name in row and method in row and row[name] > row[method])
        shown = f"**{name}**" if name == method else name
        lines.append(f"| {shown} | {scores['iou']:.3f} | {scores['max_fbeta']:.3f} | "
                     f"{'-' if name == method else wins} |")
    ceiling = result["patch_ceiling"]
    lines += [f"| patch-grid ceiling | {ceiling['iou']:.3f} | {ceiling['max_fbeta']:.3f} | - |", ""]

    curves = {name: (curve["recall"], curve["precision"]) for name, curve in gallery.curves.items()}
    if curves:
        plot_curves_xy(curves, out_dir / "pr.png", title="foreground: mean precision and recall over images")
        lines += ["## Precision and recall", "", "Binary methods have one operating point.", "",
                  "![precision-recall](pr.png)", ""]
    per_method = {name: [row[name] for row in gallery.per_image if name in row] for name in scored}
    per_method = {name: values for name, values in per_method.items() if values}
    if per_method:
        plot_distributions(per_method, out_dir / "iou_per_image.png", "IoU per image",
                           title="per-image IoU (box: quartiles, triangle: mean)")
        lines += ["## IoU per image", "", "![per-image IoU](iou_per_image.png)", ""]
    for kind, entries in (("worst", gallery.worst()), ("best", gallery.best())):
        if not entries:
            continue
        rows = [(entry["file"], entry["pixels"], entry["truth"],
                 {name: (score >= 0.5, entry["ious"][name]) for name, score in entry["scores"].items()})
                for entry in entries]
        plot_mask_grid(rows, out_dir / f"{kind}.png", title=f"{kind} {len(entries)} images of {method}")
        lines += [f"## {kind.capitalize()} {len(entries)} images of {method}", "",
                  f"| image | IoU of {method} |", "|---|---:|"]
        lines += [f"| {entry['file']} | {entry['ious'][method]:.3f} |" for entry in entries]
        lines += ["", f"![{kind} images]({kind}.png)", ""]
    path = out_dir / REPORT_FILE
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    atomic_write_text(out_dir / REPORT_JSON, json.dumps({"title": title, **result, "per_image": gallery.per_image},
                                                        indent=1) + "\n")
    return path
