"""``mcn eval --report DIR``: a Markdown report of one evaluation, with its pictures.

``DIR/report.md`` holds the metrics, AP per category, the box and keypoint precision-recall
curves drawn from pycocotools' own precision arrays, the segmentation confusion matrix, and a
gallery of the worst and best images (prediction beside ground truth), ranked by each
image's mean score over the evaluated tasks. ``DIR/report.json`` keeps the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.io import atomic_write_text
from ..data.sample import Sample
from ..viz.draw import draw_instances, palette, save_png
from ..viz.plots import plot_confusion, plot_precision_recall
from .data import EvalDataset
from .evaluate import TABLE_COLUMNS, Evaluation
from .predict import draw_prediction
from .predictor import Predictor

REPORT_FILE = "report.md"
REPORT_JSON = "report.json"
GALLERY_DIR = "gallery"
SCORE_NAMES = {"det_f1": "box F1@0.5", "pose_f1": "keypoint F1@OKS 0.5", "seg_miou": "seg mIoU", "score": "score"}
GAP = 8  # white px between prediction and ground truth
CAPTION = 22  # px of the white strip above each half, naming it


def write_report(evaluation: Evaluation, dataset: EvalDataset, predictor: Predictor, out_dir: str | Path,
                 title: str, gallery: int = 4) -> Path:
    """Write ``out_dir/report.md`` (and its figures, gallery and ``report.json``) for
    ``evaluation`` of ``predictor`` on ``dataset``; ``gallery`` worst and as many best images.
    Returns the path of report.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = predictor.info
    lines = [f"# {title}", "", f"{len(evaluation.per_image)} images; tasks {', '.join(evaluation.tasks)}.", "",
             _metrics_table(evaluation.metrics), ""]
    for name, kind, similarity in (("det", "Boxes", "IoU"), ("pose", "Keypoints", "OKS")):
        if name not in evaluation.tasks:
            continue
        lines += [f"## {kind}", ""]
        evaluator = evaluation.coco.get(name)
        if evaluator is None:
            lines += ["No predictions or no ground truth of this kind: nothing to plot.", ""]
            continue
        names = [c["name"] for c in evaluator.cocoGt.loadCats(evaluator.params.catIds)]
        figure = plot_precision_recall(evaluator.eval["precision"], evaluator.params.recThrs,
                                       evaluator.params.iouThrs, names, out_dir / f"pr_{name}.png",
                                       title=f"{kind.lower()}: precision-recall (area all, "
                                             f"{evaluator.params.maxDets[-1]} detections)", similarity=similarity)
        lines += _category_table(evaluator.eval["precision"], evaluator.params.iouThrs, names, similarity) + [""]
        if figure is not None:
            lines += [f"![{kind.lower()} precision-recall](pr_{name}.png)", ""]
    if evaluation.confusion is not None:
        classes = ["background", *info.category_names]
        plot_confusion(evaluation.confusion.matrix.numpy(), classes, out_dir / "confusion.png")
        iou = evaluation.confusion.iou().tolist()
        lines += ["## Segmentation", "", "| class | IoU |", "|---|---:|"]
        lines += [f"| {name} | {'-' if value != value else f'{100 * value:.1f}'} |" for name, value in zip(classes, iou)]
        lines += ["", "![segmentation confusion matrix](confusion.png)", ""]
    names = {record["id"]: record["file_name"] for record in dataset.coco.images}
    ranked = _draw_gallery(evaluation, dataset, predictor, out_dir, gallery)
    lines += _gallery_section(ranked, evaluation, names)
    path = out_dir / REPORT_FILE
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    atomic_write_text(out_dir / REPORT_JSON, json.dumps({
        "title": title, "metrics": evaluation.metrics, "min_score": evaluation.min_score,
        "per_image": [{"image_id": image_id, "file_name": names.get(image_id), **scores}
                      for image_id, scores in evaluation.per_image.items()],
    }, indent=1) + "\n")
    return path


def _metrics_table(metrics: dict[str, float]) -> str:
    columns = [(name, key) for name, key in TABLE_COLUMNS if key in metrics]
    return "\n".join(["| " + " | ".join(name for name, _ in columns) + " |",
                      "|" + "---:|" * len(columns),
                      "| " + " | ".join(f"{100 * metrics[key]:.1f}" for _, key in columns) + " |"])


def _category_table(precision: np.ndarray, thresholds: np.ndarray, names: list[str], similarity: str) -> list[str]:
    """AP, AP50 and AP75 per category from the precision array, as pycocotools averages it."""
    table = np.asarray(precision, dtype=float)[:, :, :, 0, -1]  # [T, R, K], area all, most detections
    at = {value: int(np.argmin(np.abs(np.asarray(thresholds) - value))) for value in (0.5, 0.75)}
    lines = [f"| category | AP | AP@{similarity} .50 | AP@{similarity} .75 |", "|---|---:|---:|---:|"]
    rows = [(name, table[:, :, k:k + 1]) for k, name in enumerate(names)]
    if len(names) > 1:
        rows.append(("**mean**", table))  # the summary's AP
    for name, part in rows:
        values = []
        for threshold in (part, part[at[0.5]:at[0.5] + 1], part[at[0.75]:at[0.75] + 1]):  # all, .50, .75
            valid = threshold[threshold > -1]
            values.append(f"{100 * valid.mean():.1f}" if valid.size else "-")
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    return lines


def _draw_gallery(evaluation: Evaluation, dataset: EvalDataset, predictor: Predictor, out_dir: Path,
                  count: int) -> dict[str, list[tuple[int, str]]]:
    """Draw the ``count`` worst and best images; ``{"worst"|"best": [(image id, picture), ...]}``."""
    order = sorted(evaluation.per_image, key=lambda image_id: (evaluation.per_image[image_id]["score"], image_id))
    worst = order[:count]
    best = [image_id for image_id in reversed(order) if image_id not in worst][:count]
    index_of = {record["id"]: index for index, record in enumerate(dataset.coco.images)}
    ranked: dict[str, list[tuple[int, str]]] = {"worst": [], "best": []}
    for kind, image_ids in (("worst", worst), ("best", best)):
        for rank, image_id in enumerate(image_ids, 1):
            index = index_of[image_id]
            original = dataset.coco.load(index)
            if dataset.label_map is not None and len(original.labels):
                original.labels = dataset.label_map[original.labels]
            item = dataset[index]
            found = predictor.decode([item.sample])
            prediction = draw_prediction(original.image, item.sample, {task: result[0] for task, result in found.items()},
                                         predictor.info, evaluation.min_score)
            truth = _draw_truth(original, evaluation.tasks, predictor.info.category_names)
            gap = torch.full((3, prediction.shape[1] + CAPTION, GAP), 255, dtype=torch.uint8)
            scores = evaluation.per_image[image_id]
            name = f"{GALLERY_DIR}/{kind}_{rank:02d}.png"
            save_png(torch.cat([_captioned(prediction, f"prediction (score {100 * scores['score']:.1f})"), gap,
                                _captioned(truth, "ground truth")], dim=2), out_dir / name)
            ranked[kind].append((image_id, name))
    return ranked


def _captioned(image: torch.Tensor, text: str) -> torch.Tensor:
    """``image`` [3, H, W] uint8 under a white strip of ``CAPTION`` px holding ``text``."""
    strip = np.full((CAPTION, image.shape[2], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, CAPTION - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return torch.cat([torch.from_numpy(strip).permute(2, 0, 1), image], dim=1)


def _draw_truth(sample: Sample, tasks: list[str], category_names: list[str]) -> torch.Tensor:
    """The ground truth of the evaluated tasks, coloured by class as the predictions are."""
    colours = palette(len(category_names))
    labels = sample.labels.tolist()
    by_class = [colours[label] for label in labels]
    return draw_instances(
        sample.image,
        sample.boxes if "det" in tasks else None,
        [category_names[label] for label in labels],
        sample.masks if "seg" in tasks else None,
        sample.keypoints if "pose" in tasks else None,
        sample.crowd if "seg" in tasks else None,
        colours=by_class, mask_colours=by_class,
    )


def _gallery_section(ranked: dict[str, list[tuple[int, str]]], evaluation: Evaluation,
                     names: dict[int, str]) -> list[str]:
    keys = [key for key in SCORE_NAMES if any(key in scores for scores in evaluation.per_image.values())]
    lines = ["## Gallery", "",
             f"Each image's score is the mean of its per-task scores (detections scoring at least "
             f"{evaluation.min_score:g}). Each picture: the prediction, then the ground truth.", ""]
    for kind, entries in ranked.items():
        if not entries:
            continue
        lines += [f"### {kind.capitalize()} {len(entries)}", "",
                  "| image | " + " | ".join(SCORE_NAMES[key] for key in keys) + " |",
                  "|---|" + "---:|" * len(keys)]
        for image_id, _ in entries:
            scores = evaluation.per_image[image_id]
            lines.append(f"| {names.get(image_id, image_id)} | " + " | ".join(f"{100 * scores[key]:.1f}" if key in scores else "-"
                                                        for key in keys) + " |")
        lines.append("")
        lines += [f"![{kind} {rank}: image {image_id}]({name})" for rank, (image_id, name) in enumerate(entries, 1)]
        lines.append("")
    return lines
