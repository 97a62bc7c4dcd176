"""MCN metrics on a dataset: COCO box and keypoint AP (pycocotools), segmentation IoU."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tqdm import tqdm

from ..evaluation.coco import evaluate_coco
from ..evaluation.masks import ConfusionMatrix, segmentation_metrics
from .data import EvalItem
from .predictor import Predictor
from .tasks.segmentation import labels_to_original

METRIC_KEYS = ("det_ap", "det_ap50", "pose_ap", "pose_ap50", "seg_iou", "seg_miou")  # the command line's JSON keys
TABLE_COLUMNS = (("seg IoU", "seg_iou"), ("seg mIoU", "seg_miou"), ("det AP", "det_ap"), ("det AP50", "det_ap50"),
                 ("pose AP", "pose_ap"), ("pose AP50", "pose_ap50"))  # the paper's Table 1 order


def evaluate(predictor: Predictor, batches: Iterable[list[EvalItem]], gt: dict, progress: bool = False,
             total: int | None = None, tasks: Sequence[str] | None = None,
             category_ids: Sequence[int] | None = None) -> dict[str, float]:
    """The metrics of the enabled tasks on a dataset, keys as the command-line contract says:
    ``det_ap``, ``det_ap50``, ``pose_ap``, ``pose_ap50``, ``seg_iou`` (person), ``seg_miou``.

    ``tasks``: score only these (the tasks the data is labelled for; default all of the
    model's). ``category_ids``: the dataset's COCO id of each model label (default the model's).
    """
    tasks = [t for t in predictor.tasks if tasks is None or t in tasks]
    category_ids = list(category_ids if category_ids is not None else predictor.info.category_ids)
    results: dict[str, list[dict]] = {"det": [], "pose": []}
    matrix = ConfusionMatrix(predictor.info.num_classes + 1)
    image_ids: set[int] = set()
    for items in tqdm(batches, desc="evaluate", unit="batch", total=total, disable=not progress, leave=False):
        if not items:
            continue
        samples = [item.sample for item in items]
        image_ids.update(sample.image_id for sample in samples)
        decoded = predictor.decode(samples)
        for name in ("det", "pose"):
            if name in decoded:
                results[name] += predictor.tasks[name].to_coco(decoded[name], samples, category_ids)
        for found, item in zip(decoded.get("seg", []), items):
            matrix.update(labels_to_original(found.labels.cpu(), item.sample), item.semantic.long())
    gt = gt_subset(gt, image_ids, category_ids)
    metrics: dict[str, float] = {}
    if "det" in tasks:
        box = evaluate_coco(gt, results["det"], "bbox")
        metrics.update(det_ap=box["ap"], det_ap50=box["ap50"])
    if "pose" in tasks:
        pose = evaluate_coco(gt, results["pose"], "keypoints")
        metrics.update(pose_ap=pose["ap"], pose_ap50=pose["ap50"])
    if "seg" in tasks:
        metrics.update(segmentation_metrics(matrix, predictor.info.person_label))
    return metrics


def gt_subset(gt: dict, image_ids: set[int], category_ids: Sequence[int]) -> dict:
    """The ground truth of the evaluated images and the model's categories."""
    wanted = set(category_ids)
    return {
        **gt,
        "images": [image for image in gt["images"] if image["id"] in image_ids],
        "annotations": [a for a in gt.get("annotations", []) if a["image_id"] in image_ids and a["category_id"] in wanted],
        "categories": [c for c in gt["categories"] if c["id"] in wanted],
    }


def format_metrics(metrics: dict[str, float], title: str = "") -> str:
    """The metrics as a table in the layout of the paper's Table 1 (percent)."""
    header = " | ".join(f"{name:>9}" for name, _ in TABLE_COLUMNS)
    row = " | ".join(f"{100 * metrics[key]:9.1f}" if key in metrics else f"{'-':>9}" for _, key in TABLE_COLUMNS)
    lines = [title] if title else []
    return "\n".join(lines + [header, row])
