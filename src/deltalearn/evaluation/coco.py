"""COCO box and keypoint AP through pycocotools, from a ground-truth dict and a results list."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU_TYPES = ("bbox", "keypoints")
# Names of COCOeval.stats, in its order, for each iou type.
STAT_NAMES = {
    "bbox": ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
             "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large"),
    "keypoints": ("ap", "ap50", "ap75", "ap_medium", "ap_large",
                  "ar", "ar50", "ar75", "ar_medium", "ar_large"),
}


def evaluate_coco(gt: dict, results: Sequence[dict], iou_type: str = "bbox") -> dict[str, float]:
    """COCO metrics of ``results`` (COCO results format) against the dataset dict ``gt``.

    Keys as in ``STAT_NAMES[iou_type]`` (``ap`` is AP@[.5:.95], ``ap50`` AP@.5, ...), all in
    [0, 1]; a metric that is undefined (no ground truth of that kind) or a run with no
    results gives 0.0. Keypoint OKS uses pycocotools' default COCO sigmas and only the
    categories that define ``keypoints``. pycocotools' printing is captured.
    """
    return coco_stats(run_cocoeval(gt, results, iou_type), iou_type)


def run_cocoeval(gt: dict, results: Sequence[dict], iou_type: str = "bbox") -> COCOeval | None:
    """pycocotools' evaluator after ``evaluate``, ``accumulate`` and ``summarize`` (its
    ``eval["precision"]`` [T, R, K, A, M], ``evalImgs``, ``stats``); None when there is
    nothing to score (no results, or no category of that kind)."""
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    gt = _complete_gt(gt)
    category_ids = [c["id"] for c in gt["categories"] if iou_type != "keypoints" or c.get("keypoints")]
    results = [copy.deepcopy(r) for r in results if r["category_id"] in category_ids]
    image_ids = {image["id"] for image in gt["images"]}
    strangers = sorted({r["image_id"] for r in results} - image_ids)
    if strangers:
        raise ValueError(f"results name image ids that the ground truth lacks: {strangers[:5]}")
    if not results or not category_ids:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.params.catIds = category_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_stats(evaluator: COCOeval | None, iou_type: str = "bbox") -> dict[str, float]:
    """``evaluator.stats`` by name (``STAT_NAMES``); undefined values and no evaluator give 0.0."""
    if evaluator is None:
        return dict.fromkeys(STAT_NAMES[iou_type], 0.0)
    return {name: max(0.0, float(value)) for name, value in zip(STAT_NAMES[iou_type], evaluator.stats)}


def per_image_f1(evaluator: COCOeval | None, image_ids: Iterable[int], min_score: float = 0.3,
                 iou_index: int = 0) -> dict[int, float]:
    """F1 of each image at pycocotools' IoU (or OKS) threshold ``iou_index`` (0: 0.5), over all
    categories and area "all", counting the detections that score at least ``min_score``.

    Read from ``evaluator.evalImgs``, so matching and ignored (crowd) regions are exactly
    COCO's. An image with nothing to find and nothing found scores 1.
    """
    counts = {image_id: [0, 0, 0] for image_id in image_ids}  # true positives, detections, ground truths
    if evaluator is not None:
        all_areas = evaluator.params.areaRng[0]
        for record in evaluator.evalImgs:
            if record is None or record["aRng"] != all_areas or record["image_id"] not in counts:
                continue
            kept = (np.asarray(record["dtScores"]) >= min_score) & ~np.asarray(record["dtIgnore"])[iou_index].astype(bool)
            matched = np.asarray(record["dtMatches"])[iou_index] > 0
            count = counts[record["image_id"]]
            count[0] += int((kept & matched).sum())
            count[1] += int(kept.sum())
            count[2] += int((~np.asarray(record["gtIgnore"]).astype(bool)).sum())
    return {image_id: (2 * tp / (found + truth) if found + truth else 1.0)
            for image_id, (tp, found, truth) in counts.items()}


def _complete_gt(gt: dict) -> dict:
    """A copy of ``gt`` with the fields pycocotools needs but COCO files may omit."""
    complete = {"info": {}, "licenses": [], "categories": [], **gt}
    annotations = []
    for ann in gt.get("annotations", []):
        ann = {"iscrowd": 0, **ann}
        if "area" not in ann and "bbox" in ann:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
        annotations.append(ann)
    complete["annotations"] = annotations
    return complete
