"""MCN metrics on a dataset: COCO box and keypoint AP (pycocotools), segmentation IoU."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from ..evaluation.coco import coco_stats, per_image_f1, run_cocoeval
from ..evaluation.masks import ConfusionMatrix, segmentation_metrics
from .data import EvalItem
from .predictor import Predictor
from .tasks.segmentation import labels_to_original

METRIC_KEYS = ("det_ap", "det_ap50", "pose_ap", "pose_ap50", "seg_iou", "seg_miou")  # the command line's JSON keys
TABLE_COLUMNS = (("seg IoU", "seg_iou"), ("seg mIoU", "seg_miou"), ("det AP", "det_ap"), ("det AP50", "det_ap50"),
                 ("pose AP", "pose_ap"), ("pose AP50", "pose_ap50"))  # the paper's Table 1 order


@dataclass
class Evaluation:
    """Everything a report draws from one evaluation.

    ``metrics``: as :func:`evaluate` returns them. ``coco``: pycocotools' evaluator per task
    ("det": bbox, "pose": keypoints; None where nothing was scored), its precision arrays
    ``eval["precision"]`` [T, R, K, A, M]. ``confusion``: pixel counts of the segmentation.
    ``per_image``: image id -> this image's score per task (``det_f1`` and ``pose_f1`` at
    IoU/OKS 0.5 for detections above ``min_score``, ``seg_miou`` over the classes it shows)
    and ``score``, their mean, by which the report ranks images.
    """

    metrics: dict[str, float]
    tasks: list[str]
    coco: dict[str, COCOeval | None] = field(default_factory=dict)
    confusion: ConfusionMatrix | None = None
    per_image: dict[int, dict[str, float]] = field(default_factory=dict)
    min_score: float = 0.3


def evaluate(predictor: Predictor, batches: Iterable[list[EvalItem]], gt: dict, progress: bool = False,
             total: int | None = None, tasks: Sequence[str] | None = None,
             category_ids: Sequence[int] | None = None) -> dict[str, float]:
    """The metrics of the enabled tasks on a dataset, keys as the command-line contract says:
    ``det_ap``, ``det_ap50``, ``pose_ap``, ``pose_ap50``, ``seg_iou`` (person), ``seg_miou``.

    ``tasks``: score only these (the tasks the data is labelled for; default all of the
    model's). ``category_ids``: the dataset's COCO id of each model label (default the model's).
    """
    return evaluate_details(predictor, batches, gt, progress, total, tasks, category_ids).metrics


def evaluate_details(predictor: Predictor, batches: Iterable[list[EvalItem]], gt: dict, progress: bool = False,
                     total: int | None = None, tasks: Sequence[str] | None = None,
                     category_ids: Sequence[int] | None = None, min_score: float = 0.3) -> Evaluation:
    """:func:`evaluate`, keeping pycocotools' evaluators, the confusion matrix and per-image scores."""
    tasks = [t for t in predictor.tasks if tasks is None or t in tasks]
    category_ids = list(category_ids if category_ids is not None else predictor.info.category_ids)
    results: dict[str, list[dict]] = {"det": [], "pose": []}
    num_labels = predictor.info.num_classes + 1
    matrix = ConfusionMatrix(num_labels)
    image_ids: list[int] = []
    seg_scores: dict[int, float] = {}
    for items in tqdm(batches, desc="evaluate", unit="batch", total=total, disable=not progress, leave=False):
        if not items:
            continue
        samples = [item.sample for item in items]
        image_ids += [sample.image_id for sample in samples]
        decoded = predictor.decode(samples)
        for name in ("det", "pose"):
            if name in decoded:
                results[name] += predictor.tasks[name].to_coco(decoded[name], samples, category_ids)
        for found, item in zip(decoded.get("seg", []), items):
            image = ConfusionMatrix(num_labels)
            image.update(labels_to_original(found.labels.cpu(), item.sample), item.semantic.long())
            matrix.matrix += image.matrix
            seg_scores[item.sample.image_id] = image.mean_iou() if image.matrix.sum() else 1.0
    gt = gt_subset(gt, set(image_ids), category_ids)
    found = Evaluation(metrics={}, tasks=tasks, min_score=min_score)
    per_task: dict[str, dict[int, float]] = {}
    for name, iou_type, key in (("det", "bbox", "det"), ("pose", "keypoints", "pose")):
        if name in tasks:
            evaluator = run_cocoeval(gt, results[name], iou_type)
            stats = coco_stats(evaluator, iou_type)
            found.coco[name] = evaluator
            found.metrics.update({f"{key}_ap": stats["ap"], f"{key}_ap50": stats["ap50"]})
            per_task[f"{key}_f1"] = per_image_f1(evaluator, image_ids, min_score)
    if "seg" in tasks:
        found.metrics.update(segmentation_metrics(matrix, predictor.info.person_label))
        found.confusion = matrix
        per_task["seg_miou"] = seg_scores
    for image_id in image_ids:
        scores = {key: values[image_id] for key, values in per_task.items() if image_id in values}
        found.per_image[image_id] = {**scores, "score": sum(scores.values()) / len(scores) if scores else 1.0}
    return found


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
