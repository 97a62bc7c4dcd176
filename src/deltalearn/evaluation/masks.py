"""Semantic-segmentation IoU accumulated over a dataset through a confusion matrix."""

from __future__ import annotations

import torch

from ..data.sample import IGNORE_INDEX


class ConfusionMatrix:
    """Pixel counts ``matrix[target, prediction]`` over ``num_classes`` labels (0 background).

    Pixels whose target is ``ignore_index`` (crowd) are not counted.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add label maps ``prediction`` and ``target`` of one shape ([H, W] or [B, H, W])."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        counted = target != self.ignore_index
        target = target[counted].long().cpu()
        prediction = prediction[counted].long().cpu()
        if len(target) and (int(target.max()) >= self.num_classes or int(prediction.max()) >= self.num_classes
                            or int(target.min()) < 0 or int(prediction.min()) < 0):
            raise ValueError(f"labels outside 0..{self.num_classes - 1}")
        pairs = target * self.num_classes + prediction
        self.matrix += torch.bincount(pairs, minlength=self.num_classes ** 2).view(self.num_classes, self.num_classes)

    def iou(self) -> torch.Tensor:
        """[num_classes] float IoU per class; NaN for a class absent from targets and predictions."""
        matrix = self.matrix.double()
        intersection = matrix.diagonal()
        union = matrix.sum(0) + matrix.sum(1) - intersection
        return torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, float("nan")))

    def mean_iou(self) -> float:
        """Mean IoU over the classes that occur (background included, as in Pascal VOC); 0 if none."""
        iou = self.iou()
        present = ~iou.isnan()
        return float(iou[present].mean()) if present.any() else 0.0


def segmentation_metrics(matrix: ConfusionMatrix, person_label: int = 0) -> dict[str, float]:
    """``seg_iou``: IoU of the person class (object label ``person_label``, map value + 1);
    ``seg_miou``: mean IoU. Undefined values are reported as 0.0."""
    person_iou = float(matrix.iou()[person_label + 1])
    return {"seg_iou": 0.0 if person_iou != person_iou else person_iou, "seg_miou": matrix.mean_iou()}
