"""Metrics: COCO AP through pycocotools and segmentation IoU."""

from .coco import STAT_NAMES, coco_stats, evaluate_coco, per_image_f1, run_cocoeval
from .masks import ConfusionMatrix, segmentation_metrics

__all__ = ["STAT_NAMES", "ConfusionMatrix", "coco_stats", "evaluate_coco", "per_image_f1", "run_cocoeval",
           "segmentation_metrics"]
