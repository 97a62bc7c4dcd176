"""Metrics: COCO AP through pycocotools and segmentation IoU."""

from .coco import STAT_NAMES, evaluate_coco
from .masks import ConfusionMatrix, segmentation_metrics

__all__ = ["STAT_NAMES", "ConfusionMatrix", "evaluate_coco", "segmentation_metrics"]
